"""crossfind core: encoders, vector stores, the SQLite catalog and the search engine.

This package imports nothing from ``indexer`` or ``web``; they are its clients.
"""

from search.errors import CrossfindError
from search.types import Hit, Modality

__all__ = ["CrossfindError", "Hit", "Modality"]
