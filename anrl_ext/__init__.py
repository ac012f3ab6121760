"""anrl_ext: ANRL (ACM MM 2021) adaptive normalization, fused, and its trainer."""
from .ops import adaptive_norm, available_backends

__version__ = "0.1.0"
__all__ = ["adaptive_norm", "available_backends", "__version__"]
