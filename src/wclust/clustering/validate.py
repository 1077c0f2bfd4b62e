"""Reading and validating .wclust files: every field is checked before it is used.

The safetensors container is parsed here (not by the safetensors library) so that each
problem is reported as a ``FormatError`` naming the field, sizes are bounded by the file's real
length before anything is allocated, and the tensors must tile the data region exactly (no
overlaps, no gaps). A SHA-256 digest over the header and every tensor (name, dtype, shape,
bytes) is checked on load, so a corrupted byte is refused instead of giving a silently wrong
model; the structural checks still hold for hostile files whose digest is valid.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct

import numpy as np
import torch

from ..errors import FormatError
from .gpt2_conv1d import as_out_in
from .packing import packed_nbytes

MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_INT = 2 ** 53
DIGEST_KEY = "sha256"  # in the wclust header: digest of the header without it + every tensor
DTYPES = {  # safetensors name -> (numpy dtype to read, torch dtype)
    "F64": (np.float64, torch.float64), "F32": (np.float32, torch.float32), "F16": (np.float16, torch.float16),
    "BF16": (np.uint16, torch.bfloat16), "I64": (np.int64, torch.int64), "I32": (np.int32, torch.int32),
    "I16": (np.int16, torch.int16), "I8": (np.int8, torch.int8), "U8": (np.uint8, torch.uint8),
    "BOOL": (np.bool_, torch.bool),
}
DTYPE_NAMES = {tdt: name for name, (_, tdt) in DTYPES.items()}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
KINDS = ("linear", "embedding", "conv", "wrapped")
HEADER_KEYS = {"format", "format_version", "source", "config", "stats", "modules", "aliases", DIGEST_KEY}
ENTRY_KEYS = {"kind", "shape", "count", "bits", "group_size", "indices", "codebook", "tied", "scale",
              "outlier_index", "outlier_value"}
STATS_INT_KEYS = ("params_total", "params_clustered", "n_codebooks", "bytes_fp32")
_NAME = re.compile(r"[^\x00-\x1f\x7f.]+(\.[^\x00-\x1f\x7f.]+)*\Z")  # dotted names, no empty part
_CLASS = re.compile(r"[A-Z][A-Za-z0-9_]{0,99}\Z")
_SOURCE_NAME = re.compile(r"[A-Za-z0-9_.\-/:]{1,200}\Z")
_LAYER_KEY = re.compile(r"(^|_)(layers?|depths?|blocks)\Z")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (not is_int(v) or abs(v) <= MAX_INT)


def need(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise FormatError(f"{field}: {msg}")


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise FormatError(f"header: duplicate key {k!r}")
        d[k] = v
    return d


def _depth(obj) -> int:
    """Nesting depth of a JSON value (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_JSON_DEPTH:
            break
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def loads(raw: bytes | str, field: str):
    """json.loads that refuses duplicate keys, > MAX_JSON_DEPTH nesting and oversized numbers."""
    try:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        obj = json.loads(raw, object_pairs_hook=_no_duplicates)
    except FormatError as e:
        raise FormatError(f"{field}: {str(e).partition(': ')[2]}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, huge ints
        raise FormatError(f"{field}: not valid JSON ({e.__class__.__name__})") from None
    need(_depth(obj) <= MAX_JSON_DEPTH, field, f"nested deeper than {MAX_JSON_DEPTH} levels")
    return obj


def _parse_container(f, size: int) -> tuple[dict, str, int]:
    need(size >= 8, "file", f"too short to be a .wclust file ({size} bytes)")
    n = struct.unpack("<Q", f.read(8))[0]
    need(2 <= n <= min(MAX_HEADER_BYTES, size - 8), "header length", f"{n} bytes does not fit a {size}-byte file")
    top = loads(f.read(n), "header")
    need(isinstance(top, dict), "header", "must be a JSON object")
    meta = top.pop("__metadata__", None)
    need(isinstance(meta, dict) and isinstance(meta.get("wclust"), str), "__metadata__.wclust",
          "missing: this is not a .wclust file (plain safetensors?)")
    need(all(isinstance(v, str) for v in meta.values()), "__metadata__", "values must be strings")
    data_len = size - 8 - n
    spans = []
    for name, e in top.items():
        f_ = f"tensors.{name}"
        need(_NAME.match(name) is not None and len(name) <= 1000, f_, "invalid tensor name")
        need(isinstance(e, dict), f_, "must be an object")
        dt = e.get("dtype")
        need(isinstance(dt, str) and dt in DTYPES, f_ + ".dtype", f"unsupported dtype {dt!r}")
        shape = e.get("shape")
        need(isinstance(shape, list) and len(shape) <= 8 and all(is_int(s) and 0 <= s < 2**40 for s in shape),
              f_ + ".shape", f"invalid shape {shape!r}")
        off = e.get("data_offsets")
        need(isinstance(off, list) and len(off) == 2 and all(is_int(o) for o in off)
              and 0 <= off[0] <= off[1] <= data_len, f_ + ".data_offsets", f"{off!r} outside the {data_len}-byte data")
        itemsize = np.dtype(DTYPES[dt][0]).itemsize
        numel = math.prod(shape)
        need(numel * itemsize == off[1] - off[0], f_ + ".data_offsets",
              f"{off[1] - off[0]} bytes for shape {shape} of {dt} ({numel * itemsize} expected)")
        spans.append((off[0], off[1], name))
    spans.sort()
    pos, prev = 0, None
    for b, e, name in spans:
        need(b >= pos, f"tensors.{name}.data_offsets", f"overlaps tensor {prev}")
        need(b == pos, f"tensors.{name}.data_offsets", f"{b - pos} bytes before it belong to no tensor")
        pos, prev = e, name
    need(pos == data_len, "tensors", f"the last {data_len - pos} data bytes belong to no tensor")
    return top, meta["wclust"], 8 + n


def _check_source(src, n_names: int) -> None:
    if src is None:
        return
    need(isinstance(src, dict), "source", "must be an object or null")
    kind = src.get("type")
    need(isinstance(kind, str), "source.type", f"must be a string, got {kind!r}")
    for key in ("zoo", "arch", "name"):
        v = src.get(key)
        need(v is None or (isinstance(v, str) and _SOURCE_NAME.match(v) is not None), f"source.{key}",
              f"invalid name {v!r}")
    if kind == "hf":
        need(isinstance(src.get("class"), str) and _CLASS.match(src["class"]) is not None, "source.class",
              f"{src.get('class')!r} is not a model class name")
        cfg = src.get("config")
        need(isinstance(cfg, dict), "source.config", "must be an object")
        mt = cfg.get("model_type")
        need(isinstance(mt, str) and re.fullmatch(r"[a-z0-9_\-]{1,64}", mt) is not None,
              "source.config.model_type", f"invalid {mt!r}")
        layers = 0
        for k, v in cfg.items():
            vals = v if isinstance(v, list) else [v]
            need(all(not is_int(x) or abs(x) < 2**31 for x in vals), f"source.config.{k}", "number too large")
            if _LAYER_KEY.search(k) or k == "num_labels":
                need(all(x is None or (is_int(x) and x >= 0) for x in vals), f"source.config.{k}",
                      f"must be a non-negative int, got {v!r}")
            if _LAYER_KEY.search(k):
                layers += sum(x for x in vals if is_int(x))
        # every layer holds at least one stored tensor: more layers than the file has tensors is hostile
        need(layers <= n_names + 8, "source.config", f"declares {layers} layers for {n_names} stored tensors")
        need(not is_int(cfg.get("num_labels")) or cfg["num_labels"] <= 2**20, "source.config.num_labels",
              "too large")
    elif kind == "timm":
        need(isinstance(src.get("name"), str), "source.name", "a timm source needs a model name")


def _check_config(cfg):
    """The header's config as a ClusterConfig (None when absent)."""
    if cfg is None:
        return None
    from .config import ClusterConfig

    try:
        return ClusterConfig.from_dict(cfg)
    except (ValueError, TypeError) as e:
        raise FormatError(f"config: {e}") from None


def _check_stats(stats) -> None:
    if stats is None:
        return
    need(isinstance(stats, dict), "stats", "must be an object or null")
    for k, v in stats.items():
        if k in STATS_INT_KEYS:
            need(is_int(v) and 0 <= v <= MAX_INT, f"stats.{k}", f"must be a non-negative int, got {v!r}")
        elif k == "bits":
            ok = (is_int(v) and 1 <= v <= 8) or (isinstance(v, list) and all(is_int(b) and 1 <= b <= 8 for b in v))
            need(ok, "stats.bits", f"must be an int (or list of ints) in 1..8, got {v!r}")
        else:
            need(v is None or is_num(v), f"stats.{k}", f"must be a number, got {v!r}")


def _check_header(h, entries: dict) -> dict:
    need(isinstance(h, dict), "wclust header", "must be a JSON object")
    need(h.get("format") == "wclust", "format", f"expected 'wclust', got {h.get('format')!r}")
    v = h.get("format_version")
    need(is_int(v), "format_version", f"must be an int, got {v!r}")
    need(v == 1, "format_version", f"version {v} is not supported by this wclust (supports 1)")
    unknown = set(h) - HEADER_KEYS
    need(not unknown, "wclust header", f"unknown field(s) {sorted(unknown)}")
    mods = h.get("modules")
    need(isinstance(mods, dict) and mods, "modules", "must be a non-empty object")
    _check_source(h.get("source"), len(entries) + len(mods))
    config = _check_config(h.get("config"))
    config_k = config.n_clusters if config is not None else None   # every codebook holds at most k entries
    _check_stats(h.get("stats"))

    def tensor(field, name, dtypes, ndim):
        need(isinstance(name, str) and name in entries, field, f"names no stored tensor ({name!r})")
        e = entries[name]
        need(e["dtype"] in dtypes, field, f"tensor {name} has dtype {e['dtype']}, expected one of {list(dtypes)}")
        need(len(e["shape"]) == ndim, field, f"tensor {name} must be {ndim}-D, is {e['shape']}")
        return e

    module_names: set[str] = set()
    for fqn, e in mods.items():
        f = f"modules.{fqn}"
        need(_NAME.match(fqn) is not None, f, "invalid module name")
        need(isinstance(e, dict), f, "must be an object")
        unknown = set(e) - ENTRY_KEYS
        need(not unknown, f, f"unknown field(s) {sorted(unknown)}")
        need(e.get("kind") in KINDS, f + ".kind", f"unknown kind {e.get('kind')!r}")
        shape = e.get("shape")
        need(isinstance(shape, list) and 2 <= len(shape) <= 5 and all(is_int(s) and 1 <= s < 2**31 for s in shape),
              f + ".shape", f"invalid weight shape {shape!r}")
        count = math.prod(shape)
        need(is_int(e.get("count")) and e["count"] == count, f + ".count",
              f"{e.get('count')!r} != product of shape {count}")
        bits = e.get("bits")
        need(is_int(bits) and 1 <= bits <= 8, f + ".bits", f"must be an int in 1..8, got {bits!r}")
        gs = e.get("group_size")
        need(is_int(gs) and 1 <= gs < 2**31, f + ".group_size", f"must be a positive int, got {gs!r}")
        ie = tensor(f + ".indices", e.get("indices"), ("U8",), 1)
        need(ie["shape"][0] == packed_nbytes(count, bits), f + ".indices",
              f"{ie['shape'][0]} bytes stored, {packed_nbytes(count, bits)} needed for {count} indices at {bits} bits")
        ce = tensor(f + ".codebook", e.get("codebook"), FLOAT_DTYPES, 2)
        n_groups, k = ce["shape"]
        need(1 <= k <= 256 and k <= 2 ** bits, f + ".codebook", f"length {k} invalid for {bits}-bit indices")
        need(config_k is None or k <= config_k, f + ".codebook", f"length {k} > config.n_clusters {config_k}")
        need(n_groups == -(-shape[0] // gs), f + ".codebook",
              f"{n_groups} groups stored, {-(-shape[0] // gs)} needed for {shape[0]} rows / group_size {gs}")
        if e.get("scale") is not None:
            se = tensor(f + ".scale", e["scale"], FLOAT_DTYPES, 1)
            need(se["shape"][0] == shape[0], f + ".scale", f"length {se['shape'][0]} != {shape[0]} rows")
        oi, ov = e.get("outlier_index"), e.get("outlier_value")
        need((oi is None) == (ov is None), f + ".outlier_index", "outlier_index and outlier_value come together")
        if oi is not None:
            a = tensor(f + ".outlier_index", oi, ("I64",), 1)
            b = tensor(f + ".outlier_value", ov, FLOAT_DTYPES, 1)
            need(a["shape"] == b["shape"] and a["shape"][0] <= count, f + ".outlier_index",
                  "outlier_index and outlier_value must have equal length <= count")
        tied = e.setdefault("tied", [])
        need(isinstance(tied, list) and all(isinstance(t, str) and _NAME.match(t) for t in tied), f + ".tied",
              "must be a list of module names")
        for name in (fqn, *tied):
            need(name not in module_names, f + ".tied", f"module {name} is clustered twice")
            module_names.add(name)
    for name in module_names:  # a clustered module cannot sit inside another one
        parts = name.split(".")
        for i in range(1, len(parts)):
            need(".".join(parts[:i]) not in module_names, f"modules.{name}", "nested inside another clustered module")
    clustered = clustered_tensor_names(h)
    aliases = h.setdefault("aliases", {})
    need(isinstance(aliases, dict), "aliases", "must be an object")
    for a, b in aliases.items():
        need(_NAME.match(a) is not None and a not in entries, f"aliases.{a}", "must be a new tensor name")
        need(isinstance(b, str) and b in entries and b not in clustered, f"aliases.{a}",
              f"must name a stored plain tensor, got {b!r}")
    return h


def clustered_tensor_names(header: dict) -> set[str]:
    names = set()
    for e in header["modules"].values():
        for key in ("indices", "codebook", "scale", "outlier_index", "outlier_value"):
            if e.get(key):
                names.add(e[key])
    return names


def canonical_json(header: dict) -> str:
    """The header as save() writes it (and hashes it, without the digest field)."""
    return json.dumps(header, sort_keys=True, allow_nan=True)


def digest(header_json: str, tensors) -> str:
    """SHA-256 over the header string and every (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256(b"wclust-digest-1\0")
    head = header_json.encode("utf-8")
    h.update(len(head).to_bytes(8, "little") + head)
    for name, dtype, shape, data in sorted(tensors, key=lambda t: t[0]):
        head = json.dumps([name, dtype, list(shape)]).encode("utf-8")
        h.update(len(head).to_bytes(8, "little") + head + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a CPU tensor, as safetensors stores them."""
    return memoryview(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy())


def _read_tensor(buf, base: int, e: dict) -> torch.Tensor:
    npdt, tdt = DTYPES[e["dtype"]]
    b, end = e["data_offsets"]
    itemsize = np.dtype(npdt).itemsize
    start = base + b
    if start % itemsize:
        arr = np.frombuffer(bytes(buf[start:base + end]), dtype=npdt).copy()
    else:
        arr = np.frombuffer(buf, dtype=npdt, count=(end - b) // itemsize, offset=start)
    t = torch.from_numpy(arr)
    if tdt == torch.bfloat16:
        t = t.view(torch.bfloat16)
    return t.reshape(e["shape"])


def _check_values(header: dict, entries: dict, tensors: dict) -> None:
    for name, e in entries.items():
        if e["dtype"] == "BOOL":
            need(bool((tensors[name].view(torch.uint8) <= 1).all()), f"tensors.{name}", "bool values other than 0/1")
    checked = set()
    for fqn, e in header["modules"].items():
        f = f"modules.{fqn}"
        for key in ("codebook", "scale", "outlier_value"):
            if e.get(key):
                if not torch.isfinite(tensors[e[key]].to(torch.float32)).all():
                    raise FormatError(f"{f}.{key}: holds NaN or Inf")
                checked.add(e[key])
        if e.get("outlier_index"):
            oi = tensors[e["outlier_index"]]
            if oi.numel() and (int(oi.min()) < 0 or int(oi.max()) >= e["count"] or bool((oi[1:] <= oi[:-1]).any())):
                raise FormatError(f"{f}.outlier_index: positions must be sorted, unique and < {e['count']}")
    for name, e in entries.items():   # every other float tensor too (norms, biases): the digest proves no author
        if e["dtype"] in FLOAT_DTYPES and name not in checked and not bool(torch.isfinite(tensors[name]).all()):
            raise FormatError(f"tensors.{name}: holds NaN or Inf")


def read_file(path, header_only: bool = False) -> tuple[dict, dict, dict]:
    """(validated header, tensors by name, container entries by name). FormatError for anything malformed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        entries, header_json, base = _parse_container(f, size)
        header = loads(header_json, "__metadata__.wclust")
        need(isinstance(header, dict), "wclust header", "must be a JSON object")
        want = header.pop(DIGEST_KEY, None)
        need(isinstance(want, str) and re.fullmatch(r"[0-9a-f]{64}", want) is not None, DIGEST_KEY,
              "missing or not a SHA-256 hex digest")
        canonical = canonical_json(header)
        header = _check_header(header, entries)
        if header_only:
            return header, {}, entries
        f.seek(0)
        buf = bytearray(size)
        got = f.readinto(memoryview(buf))
    need(got == size, "file", f"read {got} of {size} bytes (file changed while reading?)")
    view = memoryview(buf)
    got_digest = digest(canonical, ((n, e["dtype"], e["shape"], view[base + e["data_offsets"][0]:
                                                                     base + e["data_offsets"][1]])
                                      for n, e in entries.items()))
    need(got_digest == want, DIGEST_KEY, "checksum mismatch: the file is corrupted or was modified")
    tensors = {n: _read_tensor(buf, base, e) for n, e in entries.items()}
    _check_values(header, entries, tensors)
    return header, tensors, entries


def check_model_fits(header: dict, model) -> None:
    """Every clustered entry names a module of the model whose weight has that shape."""
    for fqn, e in header["modules"].items():
        for name in [fqn, *e["tied"]]:
            try:
                m = model.get_submodule(name)
            except AttributeError:
                raise FormatError(f"modules.{name}: the model has no such module") from None
            w = m._parameters.get("weight", m._buffers.get("weight"))
            if isinstance(w, torch.Tensor):
                w = as_out_in(m, w)   # a transformers Conv1D: clustered as (out, in)
            if not isinstance(w, torch.Tensor) or list(w.shape) != e["shape"]:
                got = None if not isinstance(w, torch.Tensor) else list(w.shape)
                raise FormatError(f"modules.{name}.shape: file says {e['shape']}, the model's weight is {got}")

