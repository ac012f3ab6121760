"""Functional ops: the fused adaptive normalization and its primitives."""
from .adaptive_norm import adaptive_norm, blend
from .backends import available_backends, resolve_backend

__all__ = ["adaptive_norm", "available_backends", "blend", "resolve_backend"]
