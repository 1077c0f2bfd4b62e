"""Clustered modules: weights held as ``indices`` (uint8) into a ``codebook``.

``ClusteredModule`` is the base of them all (``isinstance(m, ClusteredModule)``: m is clustered):

- ``ClusteredLinear`` replaces an ``nn.Linear`` or a transformers ``Conv1D`` (one ``wclust::lut_linear``
  op per forward).
- ``ClusteredEmbedding`` replaces an ``nn.Embedding`` (rows gathered as indices, then looked up).
- ``ClusteredConv2d`` (and ``ClusteredWrapper`` for any other module, e.g. a Linear subclass with
  its own forward) keeps the original module as ``inner`` without its weight and, for each call,
  hands it the dequantized weight: its own forward runs unchanged, so its math cannot change.

Every weight is viewed as 2-D (out_channels, rest). Indices of 1..4-bit codebooks are kept
two per byte (``index_bits == 4``), wider ones one per byte; ``bits`` is the width stored on disk.
Optional parts: ``scale`` (one float per output channel, multiplies the row) and sparse float
outliers (``outlier_index`` flat positions, ``outlier_value`` their exact values).
"""
from __future__ import annotations

import copy
import math
import threading
import warnings
import weakref
import numpy as np
import torch
from torch import nn

from ..kernels import cpu as _cpu
from ..kernels import int8 as _int8
from ..kernels import reference
from ..kernels.ops import lut_linear
from .gpt2_conv1d import is_conv1d, matmul_weight
from .packing import pack_rows_4bit
from .parts import ClusteredParts, fit_parts  # noqa: F401  (importable from here too)


def _observed() -> bool:
    """A profiler or a TorchDispatchMode (wclust.performance.profile's tracer, FakeTensor...) is
    active: ops must go through the dispatcher so that they see them."""
    return bool(torch._C._autograd._profiler_enabled()) or _dispatch_mode() is not None


try:
    from torch.utils._python_dispatch import _get_current_dispatch_mode as _dispatch_mode
except ImportError:  # pragma: no cover  (a torch without it: never take the shortcut)
    def _dispatch_mode():
        return True


def _warn_old_wrapper_name() -> None:
    warnings.warn("ClusteredModule as the wrap-any-module class is deprecated: use ClusteredWrapper "
                  "(ClusteredModule is the base class of every clustered module)", DeprecationWarning, stacklevel=3)


class ClusteredModule(nn.Module):
    """The base of every clustered module: the buffers, views of the weight, and their bookkeeping.

    Called as the wrap-any-module class it was named before (``ClusteredModule(parts, inner)`` or
    ``ClusteredModule.from_module(m)``), it builds a ``ClusteredWrapper`` with a DeprecationWarning."""

    kind = "?"

    def __new__(cls, *args, **kwargs):
        if cls is ClusteredModule and (args or kwargs):
            _warn_old_wrapper_name()
            cls = ClusteredWrapper
        return super().__new__(cls)

    @classmethod
    def from_module(cls, module: nn.Module, parts: ClusteredParts | None = None, n_clusters: int = 256):
        if cls is not ClusteredModule:
            raise NotImplementedError(f"{cls.__name__}.from_module")
        _warn_old_wrapper_name()
        return ClusteredWrapper.from_module(module, parts, n_clusters)

    def _set_parts(self, p: ClusteredParts) -> None:
        self.weight_shape = tuple(int(s) for s in p.shape)
        self.out_features = self.weight_shape[0]
        self.in_features = int(math.prod(self.weight_shape[1:]))
        self.bits = int(p.bits)
        self.group_size = int(p.group_size)
        self.index_bits = 4 if p.bits <= 4 else 8
        idx = np.ascontiguousarray(p.indices, dtype=np.uint8).reshape(self.out_features, self.in_features)
        if self.index_bits == 4:
            idx = pack_rows_4bit(idx)
        self.register_buffer("indices", torch.from_numpy(np.ascontiguousarray(idx)))
        self.register_buffer("codebook", p.codebook.detach().clone().contiguous())
        self.register_buffer("scale", None if p.scale is None else p.scale.detach().clone())
        self.register_buffer("outlier_index", None if p.outlier_index is None else p.outlier_index.to(torch.int64))
        self.register_buffer("outlier_value", None if p.outlier_value is None else p.outlier_value.detach().clone())
        self._residual = None
        self.compute_dtype: torch.dtype | None = None

    # -- views of the weight ---------------------------------------------------------------
    def unpacked_indices(self) -> torch.Tensor:
        """uint8 (out, in) indices."""
        return reference.unpack_rows(self.indices, self.in_features, self.index_bits)

    def parts(self) -> ClusteredParts:
        return ClusteredParts(self.weight_shape, self.unpacked_indices().cpu().numpy(), self.codebook,
                              self.group_size, self.bits, self.scale, self.outlier_index, self.outlier_value)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The float weight this module computes with, in its original shape."""
        dtype = dtype or self.codebook.dtype
        w = reference.dequantize(self.indices, self.codebook, self.in_features, self.group_size,
                                 self.index_bits, dtype=dtype)
        if self.scale is not None:
            w = w * self.scale.to(dtype)[:, None]
        if self.outlier_index is not None and self.outlier_index.numel():
            w = w.reshape(-1).index_copy(0, self.outlier_index, self.outlier_value.to(dtype)).reshape(w.shape)
        return w.reshape(self.weight_shape)

    @property
    def weight(self) -> torch.Tensor:
        """Dequantized weight (computed on access: for code that reads ``.weight``)."""
        return self.dequantize()

    def n_codebooks(self) -> int:
        return int(self.codebook.shape[0])

    def residual(self, dtype) -> torch.Tensor | None:
        """Sparse (out, in) matrix: exact outlier values minus their clustered values."""
        if self.outlier_index is None or not self.outlier_index.numel():
            return None
        if self._residual is None or self._residual.dtype != dtype:
            rows = self.outlier_index // self.in_features
            cols = self.outlier_index % self.in_features
            idx = self.unpacked_indices()[rows, cols].long()
            g = rows // self.group_size
            q = self.codebook[g, idx]
            if self.scale is not None:
                q = q * self.scale[rows]
            vals = (self.outlier_value - q).to(dtype)
            self._residual = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals,
                                                     (self.out_features, self.in_features),
                                                     check_invariants=False).coalesce()
        return self._residual

    def extra_repr(self) -> str:
        return (f"shape={self.weight_shape}, n_clusters={self.codebook.shape[1]}, "
                f"n_codebooks={self.codebook.shape[0]}, bits={self.bits}")


class ClusteredLinear(ClusteredModule):
    kind = "linear"

    def __init__(self, parts: ClusteredParts, bias: torch.Tensor | None):
        super().__init__()
        self._set_parts(parts)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_module(cls, module: nn.Linear, parts: ClusteredParts | None = None, n_clusters: int = 256):
        """From an ``nn.Linear``, or a transformers ``Conv1D`` (its weight transposed: ``gpt2_conv1d.py``)."""
        parts = parts or fit_parts(matmul_weight(module), n_clusters)
        return cls(parts, module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Buffers are read from the dicts directly: nn.Module.__getattr__ costs ~1 us a name,
        # which at one token per call is a visible share of a small layer's GEMV.
        bufs, bias = self._buffers, self._parameters.get("bias")
        scale, oi = bufs.get("scale"), bufs.get("outlier_index")
        cdt = self.compute_dtype
        if (type(x) is torch.Tensor and x.is_cpu and scale is None and (oi is None or not oi.numel())
                and not (x.requires_grad and torch.is_grad_enabled())
                and not torch.jit.is_tracing() and not torch.compiler.is_compiling() and not _observed()):
            # plain eager inference (no tracer, compiler, profiler or dispatch mode watching)
            xdt = x.dtype
            args = (x, bufs["indices"], bufs["codebook"], bias, self.in_features, self.group_size, self.index_bits)
            if xdt is torch.float32 and (cdt is None or cdt is torch.float32):
                # few rows of float32 x go straight to the C GEMV with this layer's plan (what the
                # op's CPU kernel calls first, so the same bits), without the dispatcher's ~5 us a call
                y = _cpu.fast_gemv(*args)
                if y is not None:
                    return y
            elif xdt is torch.float32 and cdt is torch.bfloat16:
                # bf16 compute on float32 activations: the GEMV's bf16 plan (few rows) or the AMX
                # kernel round x to bf16 and return the bf16 result as float32 themselves (the
                # values of the cast, op, cast path below)
                y = _cpu.fast_gemv(*args, bf16=True)
                if y is None:
                    y = _cpu.amx_module_linear(*args)
                if y is not None:
                    return y
            elif xdt is torch.bfloat16 and (cdt is None or cdt is torch.bfloat16):
                # bf16 activations (a model cast to bf16 as a whole), few rows: the GEMV's bf16 plan
                y = _cpu.fast_gemv(*args, bf16=True)
                if y is not None:
                    return y.to(torch.bfloat16)
        if cdt is torch.int8:
            return self._forward_int8(x, bufs, bias, scale, oi)
        dtype = cdt or x.dtype
        xin = x if x.dtype == dtype else x.to(dtype)
        y = lut_linear(xin, bufs["indices"], bufs["codebook"], bias if scale is None else None,
                       self.in_features, self.group_size, self.index_bits)
        if scale is not None:
            y = y * scale.to(dtype)
            if bias is not None:
                y = y + bias.to(dtype)
        if oi is not None and oi.numel():
            r = self.residual(dtype)
            x2 = xin.reshape(-1, self.in_features)
            y = y + torch.sparse.mm(r, x2.t()).t().reshape(y.shape)
        return y if y.dtype == x.dtype else y.to(x.dtype)


    def _forward_int8(self, x, bufs, bias, scale, oi) -> torch.Tensor:
        """Integer compute (kernels/int8.py): the C kernels where they take the call, else the
        numeric's reference; per-channel scales and float outliers applied on the float32 result."""
        xf = x if x.dtype is torch.float32 else x.float()
        args = (xf, bufs["indices"], bufs["codebook"], bias if scale is None else None, self.in_features,
                self.group_size, self.index_bits)
        y = None
        if xf.is_cpu and not (xf.requires_grad and torch.is_grad_enabled()):
            y = _int8.linear(*args)
        if y is None:
            y = _int8.reference_linear(*args).float()
        if scale is not None:
            y = y * scale.float()
            if bias is not None:
                y = y + bias.float()
        if oi is not None and oi.numel():
            x2 = xf.reshape(-1, self.in_features)
            y = y + torch.sparse.mm(self.residual(torch.float32), x2.t()).t().reshape(y.shape)
        return y if y.dtype == x.dtype else y.to(x.dtype)


class ClusteredEmbedding(ClusteredModule):
    kind = "embedding"

    def __init__(self, parts: ClusteredParts, padding_idx: int | None = None):
        super().__init__()
        self._set_parts(parts)
        self.num_embeddings, self.embedding_dim = self.out_features, self.in_features
        self.padding_idx = padding_idx

    @classmethod
    def from_module(cls, module: nn.Embedding, parts: ClusteredParts | None = None, n_clusters: int = 256):
        parts = parts or fit_parts(module.weight, n_clusters)
        return cls(parts, module.padding_idx)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"embedding input must be int32/int64, got {input.dtype}")
        flat = input.reshape(-1)
        idx = reference.unpack_rows(self.indices[flat], self.in_features, self.index_bits).long()
        if self.codebook.shape[0] == 1:
            rows = self.codebook[0][idx]
        else:
            g = flat // self.group_size
            rows = self.codebook.reshape(-1)[idx + (g * self.codebook.shape[1])[:, None]]
        if self.scale is not None:
            rows = rows * self.scale[flat][:, None]
        r = self.residual(rows.dtype)
        if r is not None:
            rows = rows + r.index_select(0, flat).to_dense()
        return rows.reshape(*input.shape, self.in_features)


class ClusteredWrapper(ClusteredModule):
    """Any module with a weight: its own forward runs with the dequantized weight injected.

    The weight is set on ``inner`` for the length of one call, under a lock of this module's own: one
    model may be called from several threads (each wrapped layer runs one call at a time; different
    layers, and every other kind of clustered module, run in parallel)."""

    kind = "wrapped"

    def __init__(self, parts: ClusteredParts, inner: nn.Module):
        super().__init__()
        self._set_parts(parts)
        if "weight" in inner._parameters:
            del inner._parameters["weight"]
        self.inner = inner

    @classmethod
    def from_module(cls, module: nn.Module, parts: ClusteredParts | None = None, n_clusters: int = 256):
        parts = parts or fit_parts(module.weight, n_clusters)
        return cls(parts, module)

    def forward(self, *args, **kwargs):
        inner = self.inner
        cdt = self.compute_dtype
        in_dtype = next((a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()), None)
        if cdt is not None and in_dtype is not None and cdt != in_dtype:
            args = tuple(a.to(cdt) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        weight = self.dequantize(cdt or in_dtype)
        with _lock_of(self):
            inner.weight = weight
            bias = inner._parameters.get("bias")
            try:
                if cdt is not None and bias is not None and bias.dtype != cdt:
                    inner._parameters["bias"] = nn.Parameter(bias.detach().to(cdt), requires_grad=False)
                out = inner(*args, **kwargs)
            finally:
                del inner.weight
                if bias is not None:
                    inner._parameters["bias"] = bias
        if cdt is not None and in_dtype is not None and isinstance(out, torch.Tensor) and out.dtype != in_dtype:
            out = out.to(in_dtype)
        return out

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self._modules.get("inner")
            if inner is None or name == "inner":
                raise
            return getattr(inner, name)


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # wrapper -> its lock (not in the module:
_LOCKS_GUARD = threading.Lock()                                      # deepcopy and pickle stay plain)


def _lock_of(module: nn.Module) -> threading.RLock:
    lock = _LOCKS.get(module)
    if lock is None:
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault(module, threading.RLock())
    return lock


class ClusteredConv2d(ClusteredWrapper):
    kind = "conv"


CLUSTERED_TYPES = (ClusteredLinear, ClusteredEmbedding, ClusteredConv2d, ClusteredWrapper)
KIND_TO_CLASS = {c.kind: c for c in CLUSTERED_TYPES}


def clustered_class_for(module: nn.Module) -> type[ClusteredModule]:
    """The clustered class for a module: a fast native one only where forward is the stock one."""
    if (type(module).forward is nn.Linear.forward and isinstance(module, nn.Linear)) or is_conv1d(module):
        return ClusteredLinear
    if type(module).forward is nn.Embedding.forward and isinstance(module, nn.Embedding) and module.max_norm is None:
        return ClusteredEmbedding
    if isinstance(module, nn.Conv2d):
        return ClusteredConv2d
    return ClusteredWrapper


CLUSTERED_BUFFERS = ("indices", "codebook", "scale", "outlier_index", "outlier_value")


def replace_module(model: nn.Module, fqn: str, new: nn.Module) -> None:
    parent_name, _, child = fqn.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def swap_in(model: nn.Module, fqn: str, parts: ClusteredParts, tied=(), cls: type | None = None) -> ClusteredModule:
    """Replace module ``fqn`` (and the modules ``tied`` to its weight) by clustered modules built
    from ``parts``; the tied ones share the very same index and codebook tensors."""
    skel = model.get_submodule(fqn)
    new = (cls or clustered_class_for(skel)).from_module(skel, parts)
    replace_module(model, fqn, new)
    for other in tied:
        twin_skel = model.get_submodule(other)
        twin = clustered_class_for(twin_skel).from_module(twin_skel, parts)
        for name in CLUSTERED_BUFFERS:
            setattr(twin, name, getattr(new, name))
        twin.tied_to = fqn
        replace_module(model, other, twin)
    return new


def clustered_modules(model: nn.Module) -> dict[str, ClusteredModule]:
    """The clustered modules of ``model`` by name (empty for a float model)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, ClusteredModule)}




def dense_view(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """A copy of ``model`` whose clustered modules are plain float modules holding the dequantized
    weights, in ``dtype`` (None: each codebook's own dtype)."""
    out = copy.deepcopy(model)
    for fqn, m in list(out.named_modules()):
        if not isinstance(m, ClusteredModule):
            continue
        w = m.dequantize(dtype or m.codebook.dtype)
        if isinstance(m, ClusteredLinear):
            new = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
            new.weight = nn.Parameter(w.reshape(m.out_features, m.in_features), requires_grad=False)
            if m.bias is not None:   # the copy's own bias (``out`` is a deep copy)
                new.bias = nn.Parameter(m.bias.detach(), requires_grad=False)
        elif isinstance(m, ClusteredEmbedding):
            new = nn.Embedding.from_pretrained(w, freeze=True, padding_idx=m.padding_idx)
        elif isinstance(m, ClusteredWrapper):
            new = m.inner
            new.weight = nn.Parameter(w, requires_grad=False)
        else:
            continue
        replace_module(out, fqn, new)
    return out
