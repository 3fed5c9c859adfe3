"""Encoders: one contract (``Encoder``), created by name through the registry."""

from search.encoders.base import AUDIO_SAMPLE_RATE, Encoder, l2_normalize
from search.encoders.registry import create_encoder, list_encoders, register_encoder

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "Encoder",
    "create_encoder",
    "l2_normalize",
    "list_encoders",
    "register_encoder",
]
