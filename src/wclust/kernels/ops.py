"""The ``wclust::lut_linear`` op: schema, fake (shape) implementation, default implementation.

Defined with a plain ``torch.library.Library`` rather than ``torch.library.custom_op``: the latter
wraps every call in a Python autograd layer that costs more per call than the whole GEMV of a
small layer (what a call costs: ``python benchmarks/op_overhead.py``,
``benchmarks/results/op_overhead_1thread.json``). The op has
no autograd formula (clustered weights are frozen); ``torch.library.opcheck`` covers it in tests.

Device kernels register with ``register_kernel("cpu")`` / ``("cuda")`` in their own modules
(kernels/cpu.py, kernels/triton_lut.py); every other device gets the pure-torch reference.
"""
from __future__ import annotations

import torch

from . import reference

SCHEMA = ("lut_linear(Tensor x, Tensor indices, Tensor codebook, Tensor? bias, SymInt in_features, "
          "SymInt group_size, SymInt index_bits) -> Tensor")

_LIB = torch.library.Library("wclust", "DEF")
_LIB.define(SCHEMA)
_LIB.impl("lut_linear", reference.lut_linear, "CompositeExplicitAutograd")

lut_linear = torch.ops.wclust.lut_linear.default


@torch.library.register_fake("wclust::lut_linear", lib=_LIB)
def _(x, indices, codebook, bias, in_features, group_size, index_bits):
    torch._check(x.shape[-1] == in_features, lambda: "x's last dimension must equal in_features")
    return x.new_empty(*x.shape[:-1], indices.shape[0])


_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


def register_kernel(device: str):
    """Decorator: ``fn`` becomes the ``wclust::lut_linear`` kernel for ``device`` ("cpu", "cuda")."""
    def deco(fn):
        _LIB.impl("lut_linear", fn, _DISPATCH_KEYS[device])
        return fn
    return deco
