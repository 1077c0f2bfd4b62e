"""The mutation engine and base files of the loader's fuzzing (tests/clustering/test_fuzz.py runs it
under hypothesis; benchmarks/fuzz.py runs 10,000+ cases with RandomDraw).

What is acceptable for a mutated file:
- ``FormatError`` (nothing else: no other exception, no crash, no hang), or
- a clean load, only where the mutation left the meaning of the file unchanged (padding or JSON
  whitespace, a reordered key): the loaded model must then equal the original bit for bit.
  Any change of meaning is caught by the structural checks or by the SHA-256 digest.
- "Hostile" cases re-sign the mutated file (a valid digest, as an attacker would write): a clean
  load must then be exactly what the file says, checked with an independent decoder built on the
  safetensors library; a model that differs from its own file is a failure.
"""
from __future__ import annotations

import json
import random
import struct

import torch
from hypothesis import strategies as st

import wclust
from wclust.clustering import validate
from wclust.errors import FormatError
from wclust.clustering.io import _CLUSTERED_BUFFERS, clustered_modules
from wclust.clustering.packing import unpack

HOSTILE_VALUES = [0, 1, -1, 2, 3, 7, 8, 9, 255, 256, 257, 2**31, 2**32 + 1, 2**63, 10**30, -(2**63), 0.5, 1e308,
                  float("nan"), float("inf"), "", "x", "F32", "BF16", "I64", "U8", "linear", "wrapped", None, True,
                  False, [], [1], [[1, 2]], [2**40, 2**40], {}, {"a": 1}, "../../etc/passwd", "BertModel",
                  "PreTrainedModel", "ViTModel", "AutoModel", "__class__", "a" * 5000]
DTYPES = list(validate.DTYPES) + ["F8_E4M3", "U16", "C64", "f32", ""]


class RandomDraw:
    """The draw interface of the mutation engine, from random.Random (the benchmark)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]


class HypothesisDraw:
    """The same interface driven by hypothesis (shrinkable)."""

    def __init__(self, data):
        self.data = data

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, seq):
        return seq[self.data.draw(st.integers(0, len(seq) - 1))]


def split(blob: bytes):
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(top: dict, data: bytes, pad: bool = True) -> bytes:
    head = json.dumps(top, separators=(",", ":")).encode()
    if pad:
        head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data


def _random_path(d: RandomDraw | HypothesisDraw, obj):
    """A (container, key) pair somewhere inside a JSON value."""
    parent, key = None, None
    for _ in range(d.int(1, 6)):
        if isinstance(obj, dict) and obj:
            k = d.pick(sorted(obj))
        elif isinstance(obj, list) and obj:
            k = d.int(0, len(obj) - 1)
        else:
            break
        parent, key, obj = obj, k, obj[k]
    return parent, key


def _edit_json(d, obj) -> None:
    parent, key = _random_path(d, obj)
    if parent is None:
        return
    op = d.int(0, 9)
    if op == 0 and isinstance(parent, dict):
        del parent[key]
    elif op == 1 and isinstance(parent, dict):
        parent[d.pick(["extra", "tied", "scale", "__metadata__", "sha256", "aliases"])] = d.pick(HOSTILE_VALUES)
    elif op == 2 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = parent[key] + d.pick([1, -1, 2, -2, 8, 1000, 2**31, 10**20])
    elif op == 3:
        nested: object = 1
        for _ in range(d.pick([40, 200, 5000])):
            nested = [nested]
        parent[key] = nested
    else:
        parent[key] = d.pick(HOSTILE_VALUES)


def mutate(blob: bytes, d) -> tuple[bytes, bool]:
    """(mutated file, re-sign?): one random mutation of a .wclust file."""
    kind = d.int(0, 12)
    b = bytearray(blob)
    if kind == 0:  # bit flips anywhere
        for _ in range(d.int(1, 8)):
            i = d.int(0, len(b) - 1)
            b[i] ^= 1 << d.int(0, 7)
        return bytes(b), False
    if kind == 1:  # random bytes overwritten
        i = d.int(0, len(b) - 1)
        for j in range(i, min(len(b), i + d.int(1, 16))):
            b[j] = d.int(0, 255)
        return bytes(b), False
    if kind == 2:  # truncation or extension
        cut = d.int(0, len(b) - 1)
        return (bytes(b[:cut]) if d.int(0, 1) else bytes(b) + bytes(d.int(1, 64))), False
    if kind == 3:  # header length field
        v = d.pick([0, 1, 2, 7, 8, 2**31, 2**63, 2**64 - 1, len(b), len(b) - 8, len(b) - 9,
                    struct.unpack("<Q", blob[:8])[0] + d.int(-16, 16)])
        b[:8] = struct.pack("<Q", max(0, v))
        return bytes(b), False
    if kind == 4:  # random file (sometimes with a plausible length prefix)
        n = d.int(0, 300)
        rnd = bytes(d.int(0, 255) for _ in range(n))
        return (struct.pack("<Q", max(0, n - 8)) + rnd if d.int(0, 1) else rnd), False
    top, data = split(blob)
    meta = top.pop("__metadata__")
    header = json.loads(meta["wclust"])
    names = sorted(top)
    resign = d.int(0, 3) > 0
    if kind == 5:  # dtype swap
        top[d.pick(names)]["dtype"] = d.pick(DTYPES)
    elif kind == 6:  # shape edits
        e = top[d.pick(names)]
        e["shape"] = d.pick([[], [0], [-1], [2**40], [2**62, 2**62], e["shape"][::-1], e["shape"] + [1],
                             [x + 1 for x in e["shape"]], [[1]], "3", None])
    elif kind == 7:  # offsets: negative, overlapping, past the end, swapped
        a, c = top[d.pick(names)], top[d.pick(names)]
        a["data_offsets"] = d.pick([[-1, a["data_offsets"][1]], list(c["data_offsets"]), a["data_offsets"][::-1],
                                    [0, len(data) + 8], [a["data_offsets"][0] + 1, a["data_offsets"][1] + 1],
                                    [2**63, 2**64], [0.0, 1.0], None])
    elif kind == 8:  # tensor table: delete, duplicate (raw), rename
        name = d.pick(names)
        op = d.int(0, 2)
        if op == 0:
            del top[name]
        elif op == 1:
            top[name + "x"] = top.pop(name)
        else:
            top["__metadata__"] = meta
            raw = join(top, data, pad=False)
            dup = json.dumps({name: top[d.pick(names)]})[1:-1].encode()
            n = struct.unpack("<Q", raw[:8])[0]
            head = raw[8:8 + n - 1] + b"," + dup + b"}"
            return struct.pack("<Q", len(head)) + head + data, False
    elif kind == 9:  # the wclust header: hostile values anywhere
        _edit_json(d, header)
    elif kind == 10:  # whitespace / key order of the container header: meaning unchanged
        top = dict(reversed(list(top.items())))
    elif kind == 12:  # data bytes changed (then re-signed: indices >= codebook, NaN, unsorted outliers ...)
        data = bytearray(data)
        for _ in range(d.int(1, 4)):
            i = d.int(0, len(data) - 1)
            data[i] = d.pick([0, 0xFF, 0x7F, 0x80, data[i] ^ (1 << d.int(0, 7))])
        data = bytes(data)
    else:  # source / config / modules fields specifically
        target = d.pick([k for k in ("source", "config", "modules", "stats", "aliases") if header.get(k)])
        _edit_json(d, header[target])
    if resign:
        try:
            header.pop("sha256", None)
            header["sha256"] = validate.digest(validate.canonical_json(header), [
                (n, e["dtype"], e["shape"], data[e["data_offsets"][0]:e["data_offsets"][1]]) for n, e in top.items()])
        except Exception:  # not signable (broken table): leave the stale digest
            pass
    try:
        meta = dict(meta, wclust=json.dumps(header, sort_keys=True, allow_nan=True))
    except (ValueError, TypeError, RecursionError):
        pass
    top["__metadata__"] = meta
    try:
        return join(top, data, pad=kind != 10), resign
    except RecursionError:
        return blob[:-1], False


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def fingerprint(model: torch.nn.Module) -> dict:
    fp = {n: (t.dtype, tuple(t.shape), _bits(t))
          for n, t in model.state_dict().items()}
    for n, m in clustered_modules(model).items():
        fp["module:" + n] = (type(m).__name__, m.bits, m.group_size, m.weight_shape, getattr(m, "tied_to", None))
    return fp


def decode_reference(blob: bytes, model: torch.nn.Module) -> None:
    """Independent decoder (safetensors library + packing): the model must be exactly what the file says."""
    from safetensors.torch import load as st_load

    tensors = st_load(blob)
    header = json.loads(split(blob)[0]["__metadata__"]["wclust"])
    loaded = clustered_modules(model)
    assert set(loaded) == {n for f, e in header["modules"].items() for n in [f, *e.get("tied", [])]}
    for fqn, e in header["modules"].items():
        idx = torch.from_numpy(unpack(tensors[e["indices"]].numpy(), e["bits"], e["count"]).astype("int64"))
        rows = e["shape"][0]
        idx = idx.reshape(rows, -1)
        cb = tensors[e["codebook"]]
        g = (torch.arange(rows) // e["group_size"])[:, None]
        w = cb[g, idx]
        if e.get("scale"):
            w = w * tensors[e["scale"]].to(w.dtype)[:, None]
        if e.get("outlier_index"):
            w = w.reshape(-1).index_copy(0, tensors[e["outlier_index"]], tensors[e["outlier_value"]].to(w.dtype))
        assert _bits(loaded[fqn].dequantize().reshape(-1)) == _bits(w.reshape(-1)), fqn
    state = model.state_dict()
    for name, t in {**tensors, **{a: tensors[b] for a, b in header.get("aliases", {}).items()}}.items():
        owner, _, leaf = name.rpartition(".")
        if name in state and not (owner in loaded and leaf in _CLUSTERED_BUFFERS):
            assert _bits(state[name]) == _bits(t.to(state[name].dtype)), name


def check_case(blob: bytes, resigned: bool, path, skeleton, reference: dict) -> str:
    """Write, load, judge: 'format_error', 'clean' (the original model, bit for bit) or 'clean_resigned'
    (a re-signed file that says something else, loaded exactly as it says); raises otherwise."""
    path.write_bytes(blob)
    try:
        model = wclust.load(path, model=skeleton())
    except FormatError:
        return "format_error"
    if fingerprint(model) == reference:
        return "clean"
    assert resigned, "a corrupted file loaded as a different model"
    decode_reference(blob, model)
    return "clean_resigned"


# ---- base files --------------------------------------------------------------------------------

def _tiny_file(path, variant: int):
    from tests.conftest import TinyTransformer

    torch.manual_seed(variant)
    m = TinyTransformer()
    cfg = [wclust.ClusterConfig(16, scope="group", group_size=10, outliers=0.01, channel_scale=True, min_size=64),
           wclust.ClusterConfig(5, bits=3, scope="model", exclude=["embed", "head"], min_size=64)][variant]
    wclust.compress(m, cfg, progress=False)
    wclust.save(m, path)
    return TinyTransformer


def _bert_file(path):
    from wclust.sources.models import hf_source_dict
    from tests.conftest import tiny_bert

    m = tiny_bert()
    m.wclust_source = hf_source_dict(m)
    wclust.compress(m, wclust.ClusterConfig(8, min_size=256), progress=False)
    wclust.save(m, path)
    return lambda: None


def _gpt2_file(path):
    """A tiny GPT-2 from its header's source: Conv1D layers clustered as Linears, a tied head."""
    import transformers
    from wclust.sources.models import hf_source_dict

    torch.manual_seed(0)
    m = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2,
                                                             n_positions=16, bos_token_id=0, eos_token_id=0))
    m.wclust_source = hf_source_dict(m)
    wclust.compress(m, wclust.ClusterConfig(16, min_size=256), progress=False)
    wclust.save(m, path)
    return lambda: None


# name, writer (returns the skeleton factory load() is given); the fuzz benchmark uses the same list
BASE_FILES = [("tiny0", lambda p: _tiny_file(p, 0)), ("tiny1", lambda p: _tiny_file(p, 1)), ("bert", _bert_file),
              ("gpt2", _gpt2_file)]
