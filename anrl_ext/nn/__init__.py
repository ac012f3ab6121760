"""nn modules: AFNM and the BN/IN blend baselines."""
from .batch_norm import StableBatchNorm2d
from .blend_norm import AFNM, BIN, BN, IBN, IN, NORMS, BlendNorm2d, INBNHalf, make_norm
from .convert import convert_batchnorm, set_backend
from .gates import GATES, PaperGate, Sigmoid2Gate, SigmoidGate
from .update_bn import update_bn

__all__ = ["AFNM", "BIN", "BN", "IBN", "IN", "INBNHalf", "BlendNorm2d", "NORMS", "make_norm",
           "convert_batchnorm", "set_backend", "update_bn", "StableBatchNorm2d", "GATES", "PaperGate",
           "SigmoidGate", "Sigmoid2Gate"]
