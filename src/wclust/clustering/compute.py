"""The compute mode of clustered modules: what their matrix products compute in (fp32, bf16, int8)."""
from __future__ import annotations

import torch
from torch import nn

from .modules import ClusteredLinear, ClusteredModule

COMPUTE_DTYPES = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
                  "int8": torch.int8}


def set_compute_dtype(model: nn.Module, dtype: torch.dtype | str | None, kinds: tuple[type, ...] = ()) -> nn.Module:
    """Compute every clustered module (or only those of the classes ``kinds``) in ``dtype``: None or
    "fp32" (the input's dtype), torch.bfloat16 / "bf16" (bf16 matrix units), or torch.int8 / "int8":
    integer compute on the indices (kernels/int8.py), which only matrix products have, so it is set
    on ClusteredLinear modules alone (the others keep the input's dtype). Returns ``model``."""
    if isinstance(dtype, str):
        if dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {dtype!r}")
        dtype = COMPUTE_DTYPES[dtype]
    if dtype not in (None, torch.float32, torch.bfloat16, torch.float16, torch.int8):
        raise ValueError(f"compute dtype must be a float dtype, torch.int8 or None, got {dtype}")
    for m in model.modules():
        if isinstance(m, ClusteredModule) and (not kinds or isinstance(m, kinds)):
            m.compute_dtype = dtype if dtype is not torch.int8 or isinstance(m, ClusteredLinear) else None
    return model
