"""anrl_ext: ANRL (ACM MM 2021) adaptive normalization, fused, and its trainer."""
from .nn import AFNM, BIN, BN, IBN, IN, INBNHalf, convert_batchnorm, make_norm, set_backend, update_bn
from .ops import adaptive_norm, available_backends

__version__ = "0.1.0"
__all__ = ["AFNM", "BIN", "BN", "IBN", "IN", "INBNHalf", "adaptive_norm", "available_backends",
           "convert_batchnorm", "make_norm", "set_backend", "update_bn", "__version__"]
