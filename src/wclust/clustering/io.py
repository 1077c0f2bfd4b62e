"""The .wclust format: one safetensors file, self-describing.

Tensors: every clustered weight as ``<fqn>.indices`` (uint8, packed at ``bits`` width),
``<fqn>.codebook`` (n_groups x K, shared codebooks stored once), optional ``<fqn>.scale``,
``<fqn>.outlier_index`` / ``<fqn>.outlier_value``; every other parameter and buffer of the model
under its state-dict name (tensors shared between names stored once). The safetensors metadata
key ``wclust`` holds a JSON header: format version, source (enough to rebuild the architecture),
config, stats and one entry per clustered module. No pickle anywhere.
"""
from __future__ import annotations

import itertools
import json
import os

import torch
from safetensors.torch import save as st_save
from torch import nn

from . import arena, validate
from ..atomic import atomic_write_bytes, atomic_write_json, jsonable  # noqa: F401  (also importable from here)
from .validate import is_int, is_num, need
from ..errors import FormatError, WclustError
from ..sysmem import release_free_memory
from .modules import CLUSTERED_BUFFERS as _CLUSTERED_BUFFERS
from .modules import KIND_TO_CLASS, ClusteredParts, clustered_class_for, clustered_modules, swap_in
from .packing import pack, unpack

FORMAT = "wclust"
FORMAT_VERSION = 1


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
    for name, t in tensors.items():
        if t.dtype not in validate.DTYPE_NAMES:
            raise ValueError(f"save: tensor {name} has dtype {t.dtype}, which .wclust does not store")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):   # load would refuse the file
            raise ValueError(f"save: tensor {name} holds NaN or Inf, which .wclust does not store")
    info = getattr(model, "wclust_info", {}) or {}
    stats = model_stats(model)
    if "sqnr_db" in info.get("stats", {}):
        # rounded: the last bits of a float sum depend on thread count and summation order
        stats["sqnr_db"] = round(float(info["stats"]["sqnr_db"]), 6)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "source": _portable_source(source if source is not None else getattr(model, "wclust_source", None)),
              "config": info.get("config"), "stats": stats, "modules": entries, "aliases": aliases}
    header[validate.DIGEST_KEY] = validate.digest(
        validate.canonical_json(header),
        ((n, validate.DTYPE_NAMES[t.dtype], tuple(t.shape), validate.tensor_bytes(t)) for n, t in tensors.items()))
    atomic_write_bytes(path, st_save(tensors, metadata={"wclust": validate.canonical_json(header)}))
    return header


def _portable_source(src):
    """The source without machine-specific fields (the local path transformers records)."""
    if not isinstance(src, dict):
        return src
    src = json.loads(json.dumps(src))
    if isinstance(src.get("config"), dict):
        src["config"].pop("_name_or_path", None)
    return src


def read_header(path: str | os.PathLike) -> dict:
    """The validated wclust header of a file (without reading tensor data)."""
    return validate.read_file(path, header_only=True)[0]


def load(path: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Rebuild (or fill ``model``) from a .wclust file; returns a runnable model in eval mode.

    Every problem with the file raises ``FormatError`` naming the field. When ``model`` is given,
    its shapes are checked before it is touched; a later error can leave it partly converted.
    """
    header, tensors, entries = validate.read_file(path)
    parts = _parts(header, tensors)
    if model is None:
        model, state = _build(header, os.path.getsize(path), parts, tensors)
    else:
        if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
            raise ValueError("load: the model has meta tensors (no storage); pass a real skeleton or model=None")
        validate.check_model_fits(header, model)
        state = _assemble(model, header, parts, tensors)
    model.load_state_dict(state, strict=False)
    model.wclust_info = {"config": header.get("config"), "stats": header.get("stats"), "path": os.fspath(path)}
    model.wclust_source = header.get("source")
    model.eval()
    del state, parts, tensors, entries  # the file's tensors and the unpacked indices: the model holds its own
    arena.consolidate(model)
    release_free_memory()  # all of that (and a float build's weights, where it fell back to one) back to the OS
    return model


def _parts(header: dict, tensors: dict) -> dict[str, ClusteredParts]:
    """Unpacked, checked parts of every clustered entry (an index >= codebook length is refused)."""
    out = {}
    for fqn, e in header["modules"].items():
        idx = unpack(tensors[e["indices"]].numpy(), e["bits"], e["count"])
        cb = tensors[e["codebook"]]
        if idx.size and int(idx.max()) >= cb.shape[1]:
            raise FormatError(f"modules.{fqn}.indices: index {int(idx.max())} >= codebook length {cb.shape[1]}")
        out[fqn] = ClusteredParts(tuple(e["shape"]), idx.reshape(e["shape"][0], -1), cb, e["group_size"], e["bits"],
                                  tensors[e["scale"]] if e.get("scale") else None,
                                  tensors[e["outlier_index"]] if e.get("outlier_index") else None,
                                  tensors[e["outlier_value"]] if e.get("outlier_value") else None)
    return out


def _build(header: dict, file_bytes: int, parts: dict, tensors: dict) -> tuple[nn.Module, dict]:
    """The architecture from the header's source, its clustered modules swapped in, and the state
    to load into it. First on the meta device (no memory), where its size is bounded by the file's
    and every tensor is checked; then for real with its parameters on the meta device, so the
    float weights the file replaces by indices are never allocated, and only the parameters the
    file fills get storage. An architecture that computes a buffer from a parameter (left on the
    meta device), or has a parameter the file does not fill, is built again with every float
    weight: the same model, at the old peak memory."""
    from .architecture import build_from_source, materialize, parameters_on_meta

    src = header.get("source")
    if isinstance(src, dict) and src.get("type") == "hf":
        _check_hf_source(src)
    meta = _construct(build_from_source, src, torch.device("meta"))
    nbytes = sum(t.numel() * t.element_size() for t in itertools.chain(meta.parameters(), meta.buffers()))
    if nbytes > 64 * file_bytes + 2**28:
        raise FormatError(f"source.config: the architecture needs {nbytes:,} bytes, far more than a "
                          f"{file_bytes:,}-byte file can fill")
    validate.check_model_fits(header, meta)
    _assemble(meta, header, parts, tensors)
    del meta
    try:
        with parameters_on_meta():
            model = _construct(build_from_source, src, torch.device("cpu"))
    except Exception:  # whatever the architecture makes of meta parameters: the float build below
        model = None
    if model is not None:
        state = _assemble(model, header, parts, tensors)
        if materialize(model, set(state)):
            return model, state
    model = _construct(build_from_source, src, torch.device("cpu"))
    validate.check_model_fits(header, model)
    return model, _assemble(model, header, parts, tensors)


def _same_kind(ref, v) -> bool:
    if v is None or ref is None:
        return True
    if isinstance(ref, bool):
        return isinstance(v, bool)
    if isinstance(ref, int):
        return is_int(v) or (isinstance(v, list) and all(is_int(x) for x in v))
    if isinstance(ref, float):
        return is_num(v)
    if isinstance(ref, (str, dict)):
        return isinstance(v, type(ref))
    if isinstance(ref, (list, tuple)):
        return isinstance(v, list)
    return True


def _check_hf_source(src: dict) -> None:
    """An hf source names a transformers model class whose config type matches, and every config
    field has the type of the class's default (so no string reaches an int field)."""
    try:
        import transformers
    except ImportError as e:
        raise WclustError(f"this file needs the Python package 'transformers' ({e})") from None
    name, cfg = src["class"], src["config"]
    try:
        cls = getattr(transformers, name, None)
    except Exception:  # a lazy transformers module that cannot import here
        cls = None
    need(isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)
         and cls is not transformers.PreTrainedModel, "source.class", f"{name!r} is not a transformers model class")
    want = getattr(getattr(cls, "config_class", None), "model_type", None)
    need(not want or want == cfg["model_type"], "source.config.model_type",
         f"{cfg['model_type']!r} does not fit {name} (expects {want!r})")
    try:
        default = transformers.AutoConfig.for_model(cfg["model_type"]).to_dict()
    except Exception:
        raise FormatError(f"source.config.model_type: unknown {cfg['model_type']!r}") from None
    for k, v in cfg.items():
        need(_same_kind(default.get(k), v), f"source.config.{k}",
             f"{v!r} has the wrong type (the default is {default.get(k)!r})")


def _construct(build, src, device) -> nn.Module:
    try:
        with device:
            return build(src)
    except (WclustError, ImportError):
        raise
    except Exception as e:  # whatever transformers makes of a hostile config: one line, named field
        msg = (str(e).splitlines() or [""])[0][:200]
        raise FormatError(f"source: the architecture cannot be built from it ({type(e).__name__}: {msg})") from None


_WIDER = {torch.float16: (torch.float32, torch.float64), torch.bfloat16: (torch.float32, torch.float64),
          torch.float32: (torch.float64,)}


def _assemble(model: nn.Module, header: dict, parts: dict, tensors: dict) -> dict:
    """Swap in the clustered modules; return the state dict to load, checked name by name."""
    for fqn, e in header["modules"].items():
        skel = model.get_submodule(fqn)
        cls = clustered_class_for(skel)
        if cls.kind != e["kind"] and not (cls.kind == "conv" and e["kind"] == "wrapped"):
            raise FormatError(f"modules.{fqn}.kind: file says {e['kind']!r}, the model has {type(skel).__name__}")
        swap_in(model, fqn, parts[fqn], e["tied"], KIND_TO_CLASS[cls.kind])
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
    for n in sorted(needed):
        want, got = expected[n], state[n]
        if tuple(want.shape) != tuple(got.shape):
            raise FormatError(f"tensors.{n}: shape {tuple(got.shape)} != model's {tuple(want.shape)}")
        if got.dtype != want.dtype and want.dtype not in _WIDER.get(got.dtype, ()):
            raise FormatError(f"tensors.{n}.dtype: {got.dtype} cannot be loaded exactly into the model's {want.dtype}")
    return state

