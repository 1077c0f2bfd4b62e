"""Reading and validating .wclust files: every field is checked before it is used.

The safetensors container is parsed here (not by the safetensors library) so that each
problem is reported as a ``FormatError`` naming the field, sizes are bounded by the file's real
length before anything is allocated, and offsets are checked to lie inside the file without
overlapping.
"""
from __future__ import annotations

import json
import math
import os
import struct

import numpy as np
import torch

from .errors import FormatError
from .packing import packed_nbytes

MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPES = {  # safetensors name -> (numpy dtype to read, torch dtype)
    "F64": (np.float64, torch.float64), "F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16),
    "BF16": (np.uint16, torch.bfloat16), "I64": (np.int64, torch.int64), "I32": (np.int32, torch.int32),
    "I16": (np.int16, torch.int16), "I8": (np.int8, torch.int8), "U8": (np.uint8, torch.uint8),
    "BOOL": (np.bool_, torch.bool),
}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
KINDS = ("linear", "embedding", "conv", "wrapped")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _need(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise FormatError(f"{field}: {msg}")


def _parse_container(f, size: int) -> tuple[dict, dict, int]:
    _need(size >= 8, "file", f"too short to be a .wclust file ({size} bytes)")
    n = struct.unpack("<Q", f.read(8))[0]
    _need(2 <= n <= min(MAX_HEADER_BYTES, size - 8), "header length",
          f"{n} bytes does not fit a {size}-byte file")
    raw = f.read(n)
    try:
        top = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise FormatError(f"header: not valid JSON ({e.__class__.__name__})") from None
    _need(isinstance(top, dict), "header", "must be a JSON object")
    meta = top.pop("__metadata__", None)
    _need(isinstance(meta, dict) and isinstance(meta.get("wclust"), str), "__metadata__.wclust",
          "missing: this is not a .wclust file (plain safetensors?)")
    data_len = size - 8 - n
    spans = []
    for name, e in top.items():
        f_ = f"tensors.{name}"
        _need(isinstance(e, dict), f_, "must be an object")
        _need(e.get("dtype") in DTYPES, f_ + ".dtype", f"unsupported dtype {e.get('dtype')!r}")
        shape = e.get("shape")
        _need(isinstance(shape, list) and len(shape) <= 8 and all(_is_int(s) and 0 <= s < 2**40 for s in shape),
              f_ + ".shape", f"invalid shape {shape!r}")
        off = e.get("data_offsets")
        _need(isinstance(off, list) and len(off) == 2 and all(_is_int(o) for o in off)
              and 0 <= off[0] <= off[1] <= data_len, f_ + ".data_offsets", f"{off!r} outside the {data_len}-byte data")
        itemsize = np.dtype(DTYPES[e["dtype"]][0]).itemsize
        numel = math.prod(shape)
        _need(numel * itemsize == off[1] - off[0], f_ + ".data_offsets",
              f"{off[1] - off[0]} bytes for shape {shape} of {e['dtype']} ({numel * itemsize} expected)")
        spans.append((off[0], off[1], name))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        _need(b1 >= e0, f"tensors.{n1}.data_offsets", f"overlaps tensor {n0}")
    try:
        header = json.loads(meta["wclust"])
    except (json.JSONDecodeError, RecursionError) as e:
        raise FormatError(f"__metadata__.wclust: not valid JSON ({e.__class__.__name__})") from None
    return header, top, 8 + n


def _check_header(h, entries: dict) -> dict:
    _need(isinstance(h, dict), "wclust header", "must be a JSON object")
    _need(h.get("format") == "wclust", "format", f"expected 'wclust', got {h.get('format')!r}")
    v = h.get("format_version")
    _need(_is_int(v), "format_version", f"must be an int, got {v!r}")
    _need(v == 1, "format_version", f"version {v} is not supported by this wclust (supports 1)")
    _need(h.get("source") is None or isinstance(h.get("source"), dict), "source", "must be an object or null")
    _need(h.get("config") is None or isinstance(h.get("config"), dict), "config", "must be an object or null")
    _need(h.get("stats") is None or isinstance(h.get("stats"), dict), "stats", "must be an object or null")
    mods = h.get("modules")
    _need(isinstance(mods, dict), "modules", "must be an object")
    aliases = h.get("aliases", {})
    _need(isinstance(aliases, dict) and all(isinstance(a, str) and isinstance(b, str) and b in entries
                                            for a, b in aliases.items()), "aliases", "must map names to stored tensors")
    h.setdefault("aliases", aliases)

    def tensor(field, name, dtypes, ndim=None):
        _need(isinstance(name, str) and name in entries, field, f"names no stored tensor ({name!r})")
        e = entries[name]
        _need(e["dtype"] in dtypes, field, f"tensor {name} has dtype {e['dtype']}, expected one of {list(dtypes)}")
        _need(ndim is None or len(e["shape"]) == ndim, field, f"tensor {name} must be {ndim}-D, is {e['shape']}")
        return e

    for fqn, e in mods.items():
        f = f"modules.{fqn}"
        _need(isinstance(e, dict), f, "must be an object")
        _need(e.get("kind") in KINDS, f + ".kind", f"unknown kind {e.get('kind')!r}")
        shape = e.get("shape")
        _need(isinstance(shape, list) and 2 <= len(shape) <= 5 and all(_is_int(s) and 1 <= s < 2**31 for s in shape),
              f + ".shape", f"invalid weight shape {shape!r}")
        count = math.prod(shape)
        _need(e.get("count") == count, f + ".count", f"{e.get('count')!r} != product of shape {count}")
        bits = e.get("bits")
        _need(_is_int(bits) and 1 <= bits <= 8, f + ".bits", f"must be an int in 1..8, got {bits!r}")
        gs = e.get("group_size")
        _need(_is_int(gs) and gs >= 1, f + ".group_size", f"must be a positive int, got {gs!r}")
        ie = tensor(f + ".indices", e.get("indices"), ("U8",), 1)
        _need(ie["shape"][0] == packed_nbytes(count, bits), f + ".indices",
              f"{ie['shape'][0]} bytes stored, {packed_nbytes(count, bits)} needed for {count} indices at {bits} bits")
        ce = tensor(f + ".codebook", e.get("codebook"), FLOAT_DTYPES, 2)
        n_groups, k = ce["shape"]
        _need(1 <= k <= 256 and k <= 2 ** bits, f + ".codebook", f"length {k} invalid for {bits}-bit indices")
        _need(n_groups == -(-shape[0] // gs), f + ".codebook",
              f"{n_groups} groups stored, {-(-shape[0] // gs)} needed for {shape[0]} rows / group_size {gs}")
        if e.get("scale") is not None:
            se = tensor(f + ".scale", e["scale"], FLOAT_DTYPES, 1)
            _need(se["shape"][0] == shape[0], f + ".scale", f"length {se['shape'][0]} != {shape[0]} rows")
        oi, ov = e.get("outlier_index"), e.get("outlier_value")
        _need((oi is None) == (ov is None), f + ".outlier_index", "outlier_index and outlier_value come together")
        if oi is not None:
            a = tensor(f + ".outlier_index", oi, ("I64",), 1)
            b = tensor(f + ".outlier_value", ov, FLOAT_DTYPES, 1)
            _need(a["shape"] == b["shape"] and a["shape"][0] <= count, f + ".outlier_index",
                  "outlier_index and outlier_value must have equal length <= count")
        tied = e.get("tied", [])
        _need(isinstance(tied, list) and all(isinstance(t, str) for t in tied), f + ".tied", "must be a list of names")
        e.setdefault("tied", tied)
    return h


def _read_tensor(buf, base: int, name: str, e: dict) -> torch.Tensor:
    npdt, tdt = DTYPES[e["dtype"]]
    b, end = e["data_offsets"]
    itemsize = np.dtype(npdt).itemsize
    start = base + b
    count = (end - b) // itemsize
    if start % itemsize:
        arr = np.frombuffer(bytes(buf[start:start + end - b]), dtype=npdt).copy()
    else:
        arr = np.frombuffer(buf, dtype=npdt, count=count, offset=start)
    t = torch.from_numpy(arr)
    if tdt == torch.bfloat16:
        t = t.view(torch.bfloat16)
    return t.reshape(e["shape"])


def clustered_tensor_names(header: dict) -> set[str]:
    names = set()
    for e in header["modules"].values():
        for key in ("indices", "codebook", "scale", "outlier_index", "outlier_value"):
            if e.get(key):
                names.add(e[key])
    return names


def _check_values(header: dict, tensors: dict) -> None:
    for fqn, e in header["modules"].items():
        f = f"modules.{fqn}"
        for key in ("codebook", "scale", "outlier_value"):
            if e.get(key) and not torch.isfinite(tensors[e[key]].to(torch.float32)).all():
                raise FormatError(f"{f}.{key}: holds NaN or Inf")
        if e.get("outlier_index"):
            oi = tensors[e["outlier_index"]]
            if oi.numel() and (int(oi.min()) < 0 or int(oi.max()) >= e["count"] or bool((oi[1:] <= oi[:-1]).any())):
                raise FormatError(f"{f}.outlier_index: positions must be sorted, unique and < {e['count']}")


def read_file(path, header_only: bool = False) -> tuple[dict, dict]:
    """(validated header, tensors by name). Raises FormatError for anything malformed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, entries, base = _parse_container(f, size)
        header = _check_header(header, entries)
        if header_only:
            return header, {}
        f.seek(0)
        buf = bytearray(size)
        view = memoryview(buf)
        got = f.readinto(view)
    _need(got == size, "file", f"read {got} of {size} bytes (file changed while reading?)")
    tensors = {n: _read_tensor(buf, base, n, e) for n, e in entries.items()}
    _check_values(header, tensors)
    return header, tensors


def check_model_fits(header: dict, tensors: dict, model) -> None:
    """Every clustered entry names a module of the model whose weight has that shape."""
    for fqn, e in header["modules"].items():
        for name in [fqn, *e["tied"]]:
            try:
                m = model.get_submodule(name)
            except AttributeError:
                raise FormatError(f"modules.{name}: the model has no such module") from None
            w = getattr(m, "weight", None)
            if not isinstance(w, torch.Tensor) or list(w.shape) != e["shape"]:
                got = None if not isinstance(w, torch.Tensor) else list(w.shape)
                raise FormatError(f"modules.{name}.shape: file says {e['shape']}, the model's weight is {got}")
