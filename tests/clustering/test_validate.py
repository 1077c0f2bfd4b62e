"""Targeted hostile files: each is re-signed (valid digest), so the named check itself must refuse it."""
import json
import struct

import pytest
import torch

import wclust
from wclust.clustering import validate
from wclust.errors import FormatError
from tests.conftest import TinyTransformer
from tests.fuzzing import join, split


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.manual_seed(0)
    m = wclust.compress(TinyTransformer(), wclust.ClusterConfig(16, scope="group", group_size=10, outliers=0.01,
                                                                channel_scale=True, min_size=64), progress=False)
    p = tmp_path_factory.mktemp("v") / "base.wclust"
    wclust.save(m, p)
    return p.read_bytes()


def edit(blob, table=None, header=None, data=None, resign=True):
    top, raw = split(blob)
    meta = top.pop("__metadata__")
    h = json.loads(meta["wclust"])
    if table:
        table(top)
    if header:
        header(h)
    raw = data(bytearray(raw)) if data else raw
    if resign:
        h.pop("sha256", None)
        h["sha256"] = validate.digest(validate.canonical_json(h), [
            (n, e["dtype"], e["shape"], raw[e["data_offsets"][0]:e["data_offsets"][1]]) for n, e in top.items()])
    top["__metadata__"] = dict(meta, wclust=json.dumps(h, allow_nan=True))
    return join(top, bytes(raw))


def _set(path, value):
    def f(h):
        *keys, last = path
        for k in keys:
            h = h[k]
        h[last] = value
    return f


def _load(tmp_path, blob, model=None):
    p = tmp_path / "x.wclust"
    p.write_bytes(blob)
    return wclust.load(p, model=model or TinyTransformer())


def _offset_of(blob, name):
    return split(blob)[0][name]["data_offsets"][0]


CASES = [  # (id, edit kwargs, field named in the message)
    ("version", dict(header=_set(["format_version"], 2)), "format_version"),
    ("version-type", dict(header=_set(["format_version"], "1")), "format_version"),
    ("format", dict(header=_set(["format"], "gguf")), "format"),
    ("unknown-field", dict(header=_set(["timing"], 1.5)), "wclust header"),
    ("kind", dict(header=_set(["modules", "fc1", "kind"], "lstm")), "modules.fc1.kind"),
    ("kind-vs-model", dict(header=_set(["modules", "fc1", "kind"], "embedding")), "modules.fc1.kind"),
    ("shape-huge", dict(header=_set(["modules", "fc1", "shape"], [10**6, 10**6])), "modules.fc1.count"),
    ("shape-ragged", dict(header=_set(["modules", "fc1", "shape"], [80, [48]])), "modules.fc1.shape"),
    ("count-float", dict(header=_set(["modules", "fc1", "count"], 3840.0)), "modules.fc1.count"),
    ("bits", dict(header=_set(["modules", "fc1", "bits"], 9)), "modules.fc1.bits"),
    ("bits-vs-length", dict(header=_set(["modules", "fc1", "bits"], 8)), "modules.fc1.indices"),
    ("group-size", dict(header=_set(["modules", "fc1", "group_size"], 0)), "modules.fc1.group_size"),
    ("groups", dict(header=_set(["modules", "fc1", "group_size"], 20)), "modules.fc1.codebook"),
    ("codebook-missing", dict(header=_set(["modules", "fc1", "codebook"], "nope")), "modules.fc1.codebook"),
    ("codebook-dtype", dict(header=_set(["modules", "fc1", "codebook"], "fc1.indices")), "modules.fc1.codebook"),
    ("tied-twice", dict(header=_set(["modules", "fc1", "tied"], ["fc2"])), "clustered twice"),
    ("tied-nested", dict(header=_set(["modules", "fc1", "tied"], ["fc2.sub"])), "nested"),
    ("name", dict(header=_set(["modules", "fc1", "tied"], ["../x"])), "modules.fc1.tied"),
    ("alias-target", dict(header=_set(["aliases"], {"head.weight": "fc1.indices"})), "aliases.head.weight"),
    ("alias-shadow", dict(header=_set(["aliases"], {"fc1.bias": "fc2.bias"})), "aliases.fc1.bias"),
    ("config", dict(header=_set(["config", "n_clusters"], 1000)), "config"),
    ("config-type", dict(header=_set(["config", "types"], 5)), "config"),
    ("config-k", dict(header=_set(["config", "n_clusters"], 2)), "codebook: length 16 > config.n_clusters 2"),
    ("stats", dict(header=_set(["stats", "params_total"], 10**400 // 10**397)), None),
    ("stats-type", dict(header=_set(["stats", "bits"], "four")), "stats.bits"),
    ("source-type", dict(header=_set(["source"], "hf:/tmp")), "source"),
    ("source-class", dict(header=_set(["source"], {"type": "hf", "class": "__class__", "config": {}})),
     "source.class"),
    ("dtype-swap", dict(table=lambda t: t["fc1.bias"].update(dtype="I32")), "tensors.fc1.bias.dtype"),
    ("dtype-unknown", dict(table=lambda t: t["fc1.bias"].update(dtype="F8")), "tensors.fc1.bias.dtype"),
    ("dtype-list", dict(table=lambda t: t["fc1.bias"].update(dtype=["F32"])), "tensors.fc1.bias.dtype"),
    ("shape-bytes", dict(table=lambda t: t["fc1.bias"].update(shape=[81])), "tensors.fc1.bias.data_offsets"),
    ("shape-model", dict(table=lambda t: t["fc1.bias"].update(shape=[40, 2])), "tensors.fc1.bias"),
    ("offsets-negative", dict(table=lambda t: t["fc1.bias"].update(data_offsets=[-4, 316])), "data_offsets"),
    ("offsets-overlap", dict(table=lambda t: t["fc2.bias"].update(data_offsets=t["fc1.bias"]["data_offsets"][:1] +
                                                                   [t["fc1.bias"]["data_offsets"][0] + 192])),
     "data_offsets"),
    ("tensor-extra", dict(table=lambda t: t.update({"junk": dict(dtype="U8", shape=[0], data_offsets=[0, 0])})),
     "no place"),
    ("tensor-missing", dict(table=lambda t: t.pop("norm.weight")), "data"),
    ("codebook-nan", dict(data=lambda d: d), None),  # replaced below
]


@pytest.mark.parametrize("name,kw,field", CASES, ids=[c[0] for c in CASES])
def test_each_check_names_its_field(base, tmp_path, name, kw, field):
    if name == "codebook-nan":
        off = _offset_of(base, "fc1.codebook")
        kw = dict(data=lambda d: d.__setitem__(slice(off, off + 4), struct.pack("<f", float("nan"))) or d)
        field = "modules.fc1.codebook"
    if name == "stats":
        kw = dict(header=_set(["stats", "params_total"], -5))
        field = "stats.params_total"
    with pytest.raises(FormatError) as e:
        _load(tmp_path, edit(base, **kw))
    assert field in str(e.value)


def test_index_beyond_codebook_refused_not_clamped(tmp_path):
    torch.manual_seed(0)
    m = wclust.compress(TinyTransformer(), wclust.ClusterConfig(5, bits=3, min_size=64), progress=False)
    p = tmp_path / "a.wclust"
    wclust.save(m, p)
    blob = p.read_bytes()
    off = _offset_of(blob, "fc1.indices")
    bad = edit(blob, data=lambda d: d.__setitem__(off, 0xFF) or d)   # index 7 >= codebook length 5
    with pytest.raises(FormatError, match=r"modules.fc1.indices: index 7 >= codebook length 5"):
        _load(tmp_path, bad)


@pytest.mark.parametrize("name,value", [("norm.weight", float("inf")), ("fc2.bias", float("nan")),
                                        ("norm.bias", float("-inf"))])
def test_non_finite_plain_tensor_refused(base, tmp_path, name, value):
    off = _offset_of(base, name) + 4
    bad = edit(base, data=lambda d: d.__setitem__(slice(off, off + 4), struct.pack("<f", value)) or d)
    with pytest.raises(FormatError, match=f"tensors.{name}: holds NaN or Inf"):
        _load(tmp_path, bad)
    with pytest.raises(FormatError, match=f"tensors.{name}"):   # what info reports as verified
        validate.read_file(tmp_path / "x.wclust")


def test_non_finite_bf16_tensor_refused(tmp_path):
    m = torch.nn.Sequential(torch.nn.Linear(64, 32)).to(torch.bfloat16)
    wclust.compress(m, wclust.ClusterConfig(16), progress=False)
    wclust.save(m, tmp_path / "b.wclust")
    blob = (tmp_path / "b.wclust").read_bytes()
    off = _offset_of(blob, "0.bias")
    bad = edit(blob, data=lambda d: d.__setitem__(slice(off, off + 2), b"\x80\x7f") or d)   # bf16 +inf
    with pytest.raises(FormatError, match="tensors.0.bias: holds NaN or Inf"):
        _load(tmp_path, bad, model=torch.nn.Sequential(torch.nn.Linear(64, 32)).to(torch.bfloat16))


def test_corruption_caught_by_digest(base, tmp_path):
    off = _offset_of(base, "norm.weight")
    bad = edit(base, data=lambda d: d.__setitem__(off, d[off] ^ 1) or d, resign=False)
    with pytest.raises(FormatError, match="sha256: checksum mismatch"):
        _load(tmp_path, bad)
    # a header edit that keeps the structure valid (group_size 10 -> 11 still gives 8 groups for 80 rows)
    bad = edit(base, header=_set(["modules", "fc1", "group_size"], 11), resign=False)
    with pytest.raises(FormatError, match="sha256"):
        _load(tmp_path, bad)


def test_json_hazards(base, tmp_path):
    top, raw = split(base)
    head = json.dumps(top).encode()
    dup = head[:-1] + b', "fc1.bias": ' + json.dumps(top["fc1.bias"]).encode() + b"}"
    deep = b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    huge = b'{"a": ' + b"9" * 5000 + b"}"
    for h, msg in ((dup, "duplicate key"), (deep, "header"), (huge, "header"), (b"\xff\xfe{}", "header")):
        with pytest.raises(FormatError, match=msg):
            _load(tmp_path, struct.pack("<Q", len(h)) + h + raw)
    for n in (2**64 - 1, 2**40, 0):  # header length far past the end / zero
        with pytest.raises(FormatError, match="header length"):
            _load(tmp_path, struct.pack("<Q", n) + base[8:])


def test_plain_safetensors_and_non_files(tmp_path):
    with pytest.raises(FormatError, match="too short"):
        _load(tmp_path, b"abc")
    with pytest.raises(FileNotFoundError):
        wclust.load(tmp_path / "nope.wclust", model=TinyTransformer())


def test_wrong_dtype_into_model_refused(base, tmp_path):
    # a float64 norm weight cannot load exactly into a float32 model (and an int one never)
    m = TinyTransformer().to(torch.float16)
    with pytest.raises((FormatError, ValueError)):
        _load(tmp_path, base, model=m)


def test_meta_skeleton_refused(base, tmp_path):
    with torch.device("meta"):
        m = TinyTransformer()
    with pytest.raises(ValueError, match="meta"):
        _load(tmp_path, base, model=m)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.fuzzing import _bert_file

    p = tmp_path_factory.mktemp("b") / "bert.wclust"
    _bert_file(p)
    return p.read_bytes()


SOURCE_CASES = [
    (["source", "config", "hidden_size"], "32", "source.config.hidden_size"),
    (["source", "config", "hidden_size"], 2**28, "bytes"),                    # bounded on the meta device
    (["source", "config", "hidden_size"], 33, "cannot be built"),             # not divisible by the heads
    (["source", "config", "vocab_size"], 2**40, "source.config.vocab_size"),
    (["source", "config", "num_hidden_layers"], 10**6, "layers"),
    (["source", "config", "num_labels"], 10**9, "num_labels"),
    (["source", "config", "model_type"], "no-such-model", "source.config.model_type"),
    (["source", "config", "model_type"], ["bert"], "source.config.model_type"),
    (["source", "config", "layer_norm_eps"], "tiny", "source.config.layer_norm_eps"),
    (["source", "config", "id2label"], json.loads("[" * 40 + "]" * 40), "nested"),
    (["source", "class"], "ViTModel", "source.config.model_type"),
    (["source", "class"], "PreTrainedModel", "source.class"),
    (["source", "class"], "AutoModel", "source.class"),
    (["source", "class"], "os.system", "source.class"),
    (["source", "class"], "BertForMaskedLM", "no such module"),              # a real class, other layout
    (["source", "type"], "pickle", "source.type"),
    (["source"], None, "does not describe its architecture"),
]


@pytest.mark.parametrize("path,value,field", SOURCE_CASES, ids=[f"{c[0][-1]}={str(c[1])[:12]}" for c in SOURCE_CASES])
def test_hostile_source_fields(bert, tmp_path, path, value, field):
    p = tmp_path / "x.wclust"
    p.write_bytes(edit(bert, header=_set(path, value)))
    with pytest.raises(FormatError) as e:
        wclust.load(p)
    assert field in str(e.value)
