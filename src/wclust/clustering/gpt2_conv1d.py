"""transformers' ``Conv1D`` (GPT-2 and its kin): ``y = x @ W + b`` with ``W`` stored (in, out), the
transpose of ``nn.Linear``'s. wclust clusters it as a Linear: its weight seen as (out, in), the
module replaced by a ``ClusteredLinear`` (kind "linear"), so it runs on the same kernels; float
Conv1D modules stay as they are, in files too.

Found without importing transformers: a model that holds a Conv1D has imported it already.
"""
from __future__ import annotations

import sys

import torch
from torch import nn


def conv1d_class() -> type | None:
    """transformers' Conv1D class when transformers is loaded, else None."""
    return getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)


def is_conv1d(module: nn.Module) -> bool:
    """A transformers Conv1D whose forward is the stock one (so it is exactly a transposed Linear)."""
    cls = conv1d_class()
    return cls is not None and isinstance(module, cls) and type(module).forward is cls.forward


def linear_classes() -> tuple[type, ...]:
    """The module classes clustered as kind "linear"."""
    cls = conv1d_class()
    return (nn.Linear,) if cls is None else (nn.Linear, cls)


def as_out_in(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """``t``, shaped like ``module``'s weight, viewed as (out, in): transposed for a Conv1D."""
    return t.t() if is_conv1d(module) else t


def matmul_weight(module: nn.Module) -> torch.Tensor:
    """``module``'s weight as (out, in, ...), the layout wclust clusters."""
    return as_out_in(module, module.weight)

