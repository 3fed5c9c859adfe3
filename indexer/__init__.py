"""Bulk indexing: discover files, sniff and decode them in worker processes, embed in batches,
and write them into a ``search.index.Index`` incrementally and crash-safely.

A thin client of ``search``: ``index_paths(paths, index, encoder, settings) -> IndexReport``.
"""

from indexer.pipeline import index_paths
from indexer.report import IndexReport

__all__ = ["IndexReport", "index_paths"]
