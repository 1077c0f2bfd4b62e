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


def linears_in_place_of_conv1d(model: nn.Module) -> nn.Module:
    """``model`` with each float Conv1D replaced by the ``nn.Linear`` it is (weight transposed,
    the same parameters otherwise): for tools that know only nn.Linear (torch's dynamic int8
    quantization). Shared Conv1D weights are left alone."""
    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    for fqn, m in list(model.named_modules()):
        if not is_conv1d(m) or counts.get(id(m.weight), 0) > 1:
            continue
        lin = nn.Linear(m.weight.shape[0], m.weight.shape[1], bias=m.bias is not None,
                        device=m.weight.device, dtype=m.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(m.weight.t())
            if m.bias is not None:
                lin.bias.copy_(m.bias)
        lin.train(m.training)
        parent, _, name = fqn.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, name, lin)
    return model
