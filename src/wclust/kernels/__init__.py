"""Kernels that compute on indices + codebook.

``ops.lut_linear`` is the one entry point (a ``torch.library`` custom op): its default
implementation is ``reference.lut_linear`` (pure torch, dequantizes tile by tile); device
kernels (C on CPU, Triton on GPU) register themselves beside it.
"""
from .ops import lut_linear  # noqa: F401
from .reference import dequantize  # noqa: F401

__all__ = ["lut_linear", "dequantize"]
