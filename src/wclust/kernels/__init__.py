"""Kernels that compute on indices + codebook.

``ops.lut_linear`` is the one entry point (a ``torch.library`` custom op): its default
implementation is ``reference.lut_linear`` (pure torch, dequantizes tile by tile); device
kernels (C on CPU, Triton on GPU) register themselves beside it.
"""
from .ops import lut_linear  # noqa: F401
from .reference import dequantize  # noqa: F401
from . import cpu  # noqa: F401,E402  (registers the C kernel for "cpu")
import torch as _torch  # noqa: E402

if _torch.cuda.is_available():  # importing triton costs ~0.4 s: only where a GPU can use it
    from . import triton_lut  # noqa: F401  (registers the Triton kernel for "cuda")

__all__ = ["lut_linear", "dequantize"]
