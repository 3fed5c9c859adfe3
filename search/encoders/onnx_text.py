"""MiniLM sentence embeddings through ONNX Runtime: the sentence-transformers model's own
tokenizer, its BERT exported once to ONNX (cached on disk), mean pooling in numpy.

Same vectors as ``SentenceTransformer.encode`` within float tolerance (tested), faster on a
2-core CPU; the encoder falls back to sentence-transformers when export or loading fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from search.encoders.base import l2_normalize
from search.settings import get_settings

# Bump when the exported graph changes: it keys the cached .onnx file.
EXPORT_VERSION = 1
OPSET = 17


def default_threads() -> int:
    """ONNX Runtime intra-op threads: ``settings.onnx_threads``, else up to 2 (the cores).

    ``crossfind serve`` sets 1: many small concurrent query calls use the cores better one
    thread each (bench api, 2 busy cores: server CPU 7.5 -> 6.7 ms/request, p95 161 -> 136 ms),
    while indexing's large batches gain from 2.
    """
    value = get_settings().onnx_threads
    if value is not None and value > 0:
        return value
    return max(1, min(2, os.cpu_count() or 1))


class OnnxSentenceEncoder:
    """``__call__(texts) -> float32[n, d]`` L2-normalised, batched by similar length.

    Once the export is cached, loading needs neither sentence-transformers nor the PyTorch
    model: only the ``tokenizers`` tokenizer and the ONNX file.
    """

    def __init__(self, model_dir: Path, cache_dir: Path, key: str, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.max_length = int(config.get("max_seq_length", 256))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # the file ships fixed 128-token padding; sentence-transformers pads to the longest
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0)
        weights = model_dir / "model.safetensors"
        stamp = f"{key}:{weights.stat().st_size}:{EXPORT_VERSION}:{OPSET}"
        path = Path(cache_dir) / f"{key}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}.onnx"
        if not path.exists():
            _export(model_dir, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        # idle pool threads must not busy-wait after a call: a query is one short call, and
        # spinning doubled its CPU time (5 -> 10 ms) and slowed FAISS/SQLite next to it
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception:
            path.unlink(missing_ok=True)  # a corrupt export is rebuilt next time
            raise
        self.inputs = {i.name for i in self.session.get_inputs()}

    def __call__(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = list(texts)
        # sorting by length keeps padding (wasted compute) small, as sentence-transformers does
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), 0), dtype=np.float32)
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            chunks.append(self._embed(batch))
        if chunks:
            out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
            out[order] = np.concatenate(chunks)
        return out

    def _embed(self, batch: list[str]) -> np.ndarray:
        encs = self.tokenizer.encode_batch(batch)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        feed = {
            "input_ids": ids,
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
        }
        feed = {k: v for k, v in feed.items() if k in self.inputs}
        (tokens,) = self.session.run(["last_hidden_state"], feed)
        mask = feed["attention_mask"][..., None].astype(np.float32)
        pooled = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return l2_normalize(pooled)


def _export(model_dir: Path, path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    bert: Any = SentenceTransformer(str(model_dir), device="cpu")[0].auto_model

    class Wrapper(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ids = torch.ones(2, 8, dtype=torch.int64)
    # a padded row, so tracing keeps the attention-mask path (an all-ones mask may be dropped)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    axes = {0: "n", 1: "seq"}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
        torch.onnx.export(
            Wrapper(bert).eval(),
            (ids, mask, torch.zeros_like(ids)),
            str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "last_hidden_state": axes},
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)
