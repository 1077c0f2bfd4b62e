"""The .wclust format: one safetensors file, self-describing.

Tensors: every clustered weight as ``<fqn>.indices`` (uint8, packed at ``bits`` width),
``<fqn>.codebook`` (n_groups x K, shared codebooks stored once), optional ``<fqn>.scale``,
``<fqn>.outlier_index`` / ``<fqn>.outlier_value``; every other parameter and buffer of the model
under its state-dict name (tensors shared between names stored once). The safetensors metadata
key ``wclust`` holds a JSON header: format version, source (enough to rebuild the architecture),
config, stats and one entry per clustered module. No pickle anywhere.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import torch
from safetensors.torch import save as st_save
from torch import nn

from . import validate
from .errors import FormatError
from .modules import KIND_TO_CLASS, ClusteredParts, _Clustered, clustered_class_for
from .packing import pack, unpack

FORMAT = "wclust"
FORMAT_VERSION = 1
_CLUSTERED_BUFFERS = ("indices", "codebook", "scale", "outlier_index", "outlier_value")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, rename over ``path``."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def clustered_modules(model: nn.Module) -> dict[str, _Clustered]:
    return {n: m for n, m in model.named_modules() if isinstance(m, _Clustered)}


def model_stats(model: nn.Module) -> dict:
    """Parameter counts, bytes and codebook count of a (clustered) model."""
    cms = clustered_modules(model)
    seen, n_clustered, codebooks = set(), 0, set()
    bits = set()
    for m in cms.values():
        if id(m.indices) in seen:
            continue
        seen.add(id(m.indices))
        n_clustered += m.out_features * m.in_features
        bits.add(m.bits)
        for g in range(m.codebook.shape[0]):
            codebooks.add(m.codebook[g].to(torch.float32).numpy().tobytes() if m.codebook.shape[0] > 1
                          else (id(m.codebook), m.codebook.to(torch.float32).numpy().tobytes()))
    other = {id(p): p.numel() for p in model.parameters()}
    n_other = sum(other.values())
    return {"params_total": n_clustered + n_other, "params_clustered": n_clustered,
            "n_codebooks": len({c if isinstance(c, bytes) else c[1] for c in codebooks}),
            "bits": sorted(bits)[0] if len(bits) == 1 else sorted(bits),
            "bytes_fp32": 4 * (n_clustered + n_other)}


def save(model: nn.Module, path: str | os.PathLike, *, source: dict | None = None) -> dict:
    """Write ``model`` (clustered with ``wclust.compress``) to ``path`` atomically. Returns the header."""
    cms = clustered_modules(model)
    if not cms:
        raise ValueError("save: the model has no clustered module; call wclust.compress first")
    tensors: dict[str, torch.Tensor] = {}
    by_content: dict[tuple, str] = {}
    entries = {}
    owner_of: dict[int, str] = {}
    for fqn, m in cms.items():
        if id(m.indices) in owner_of:
            entries[owner_of[id(m.indices)]]["tied"].append(fqn)
            continue
        owner_of[id(m.indices)] = fqn
        parts = m.parts()
        count = parts.indices.size
        tensors[f"{fqn}.indices"] = torch.from_numpy(pack(parts.indices, m.bits))
        cb = parts.codebook.detach().contiguous()
        key = (str(cb.dtype), tuple(cb.shape), cb.view(torch.uint8).numpy().tobytes() if cb.dtype == torch.bfloat16
               else cb.numpy().tobytes())
        if key not in by_content:
            by_content[key] = f"{fqn}.codebook"
            tensors[f"{fqn}.codebook"] = cb
        entry = {"kind": m.kind, "shape": list(m.weight_shape), "bits": m.bits, "group_size": m.group_size,
                 "count": count, "indices": f"{fqn}.indices", "codebook": by_content[key], "tied": []}
        if parts.scale is not None:
            tensors[f"{fqn}.scale"] = parts.scale.detach().contiguous()
            entry["scale"] = f"{fqn}.scale"
        if parts.outlier_index is not None:
            tensors[f"{fqn}.outlier_index"] = parts.outlier_index.to(torch.int64).contiguous()
            tensors[f"{fqn}.outlier_value"] = parts.outlier_value.detach().contiguous()
            entry["outlier_index"] = f"{fqn}.outlier_index"
            entry["outlier_value"] = f"{fqn}.outlier_value"
        entries[fqn] = entry
    aliases = {}
    by_storage: dict[tuple, str] = {}
    for name, t in model.state_dict(keep_vars=False).items():
        owner, _, leaf = name.rpartition(".")
        if owner in cms and leaf in _CLUSTERED_BUFFERS:
            continue
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype) if t.numel() else None
        if key is not None and key in by_storage:
            aliases[name] = by_storage[key]
            continue
        if key is not None:
            by_storage[key] = name
        tensors[name] = t.detach().contiguous().clone()
    info = getattr(model, "wclust_info", {}) or {}
    stats = model_stats(model)
    if "sqnr_db" in info.get("stats", {}):
        stats["sqnr_db"] = float(info["stats"]["sqnr_db"])
    header = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "source": source if source is not None else getattr(model, "wclust_source", None),
              "config": info.get("config"), "stats": stats, "modules": entries, "aliases": aliases}
    meta = {"wclust": json.dumps(header, sort_keys=True, allow_nan=True)}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))
    return header


def read_header(path: str | os.PathLike) -> dict:
    """The validated wclust header of a file (without reading tensor data)."""
    return validate.read_file(path, header_only=True)[0]


def load(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Rebuild (or fill ``model``) from a .wclust file; returns a runnable model in eval mode."""
    header, tensors = validate.read_file(path)
    if model is None:
        from .models import build_from_source

        model = build_from_source(header.get("source"))
    validate.check_model_fits(header, tensors, model)
    for fqn, e in header["modules"].items():
        skel = model.get_submodule(fqn)
        cls = clustered_class_for(skel)
        if cls.kind != e["kind"] and not (cls.kind == "conv" and e["kind"] == "wrapped"):
            raise FormatError(f"modules.{fqn}.kind: file says {e['kind']!r}, the model has {type(skel).__name__}")
        idx = unpack(tensors[e["indices"]].numpy(), e["bits"], e["count"])
        cb = tensors[e["codebook"]]
        if idx.size and int(idx.max()) >= cb.shape[1]:
            raise FormatError(f"modules.{fqn}.indices: index {int(idx.max())} >= codebook length {cb.shape[1]}")
        parts = ClusteredParts(tuple(e["shape"]), idx.reshape(e["shape"][0], -1), cb, e["group_size"], e["bits"],
                               tensors.get(e.get("scale")) if e.get("scale") else None,
                               tensors[e["outlier_index"]] if e.get("outlier_index") else None,
                               tensors[e["outlier_value"]] if e.get("outlier_value") else None)
        new = KIND_TO_CLASS[cls.kind].from_module(skel, parts)
        _replace(model, fqn, new)
        for other in e["tied"]:
            twin_skel = model.get_submodule(other)
            twin = clustered_class_for(twin_skel).from_module(twin_skel, parts)
            for name in _CLUSTERED_BUFFERS:
                setattr(twin, name, getattr(new, name))
            twin.tied_to = fqn
            _replace(model, other, twin)
    state = {n: t for n, t in tensors.items() if n not in validate.clustered_tensor_names(header)}
    for name, target in header["aliases"].items():
        state[name] = tensors[target]
    expected = model.state_dict()
    clustered = clustered_modules(model)
    needed = {n for n in expected
              if not (n.rpartition(".")[0] in clustered and n.rpartition(".")[2] in _CLUSTERED_BUFFERS)}
    missing = sorted(needed - set(state))
    unexpected = sorted(set(state) - needed)
    if missing:
        raise FormatError(f"tensors: the file lacks {len(missing)} tensor(s) the model needs, e.g. {missing[:3]}")
    if unexpected:
        raise FormatError(f"tensors: the model has no place for {len(unexpected)} tensor(s), e.g. {unexpected[:3]}")
    for n in needed:
        if tuple(expected[n].shape) != tuple(state[n].shape):
            raise FormatError(f"tensors.{n}: shape {tuple(state[n].shape)} != model's {tuple(expected[n].shape)}")
    model.load_state_dict(state, strict=False)
    model.wclust_info = {"config": header.get("config"), "stats": header.get("stats"), "path": os.fspath(path)}
    model.wclust_source = header.get("source")
    model.eval()
    return model


def _replace(model: nn.Module, fqn: str, new: nn.Module) -> None:
    parent_name, _, child = fqn.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
