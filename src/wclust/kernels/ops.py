"""The ``wclust::lut_linear`` op: schema, fake (shape) implementation, default implementation.

Device kernels register with ``lut_linear.register_kernel("cpu")`` / ``("cuda")`` in their own
modules (kernels/cpu.py, kernels/triton_lut.py).
"""
from __future__ import annotations

from typing import Optional

import torch

from . import reference


@torch.library.custom_op("wclust::lut_linear", mutates_args=())
def lut_linear(x: torch.Tensor, indices: torch.Tensor, codebook: torch.Tensor, bias: Optional[torch.Tensor],
               in_features: int, group_size: int, index_bits: int) -> torch.Tensor:
    return reference.lut_linear(x, indices, codebook, bias, in_features, group_size, index_bits)


@lut_linear.register_fake
def _(x, indices, codebook, bias, in_features, group_size, index_bits):
    torch._check(x.shape[-1] == in_features, lambda: "x's last dimension must equal in_features")
    return x.new_empty(*x.shape[:-1], indices.shape[0])
