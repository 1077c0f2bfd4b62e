"""Sources -> nn.Module: ``zoo:NAME``, ``hf:DIR``, ``timm:NAME[:WEIGHTS]``, ``arch:NAME``, or a
``.wclust`` file.

``arch:NAME`` builds a known architecture with random weights (transformers' own init, no download):
for timing, profiling and clustering-speed work where pretrained weights are not needed
(``arch:vit-b16`` = ViT-B/16 with a 1000-class head, 86.6M parameters; ``arch:deit-b`` = DeiT-B;
``arch:gpt2`` = GPT-2 small with its LM head, 124M parameters).

Every model returned carries ``model.wclust_source``: a JSON-able description from which
``clustering.architecture.build_from_source`` rebuilds the architecture without the original
checkpoint (what ``wclust.load`` does with a file's header).
"""
from __future__ import annotations

import importlib
import os
import warnings

import torch
from torch import nn

from ..clustering.architecture import hf_source_dict, need_package
from ..errors import WclustError

# zoo name -> "module:function" returning an nn.Module with wclust_source set; loaded lazily
ZOO = {
    "minilm": "wclust.sources.zoo:load_minilm",
    "dinov2-s": "wclust.sources.dinov2:load_dinov2_s",
}


# arch name -> (transformers model class, config class, config kwargs)
ARCHS = {
    "vit-b16": ("ViTForImageClassification", "ViTConfig", {"image_size": 224, "patch_size": 16, "num_labels": 1000}),
    "deit-b": ("DeiTForImageClassification", "DeiTConfig", {"image_size": 224, "patch_size": 16, "num_labels": 1000}),
    "vit-s16": ("ViTForImageClassification", "ViTConfig", {"image_size": 224, "patch_size": 16, "num_labels": 1000,
                                                           "hidden_size": 384, "num_attention_heads": 6,
                                                           "intermediate_size": 1536}),
    # GPT-2 small: its attention and MLP layers are transformers Conv1D (clustered as Linears)
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", {}),
}


def load_arch(name: str, seed: int = 0) -> nn.Module:
    if name not in ARCHS:
        raise WclustError(f"unknown arch {name!r}; known: {', '.join(sorted(ARCHS))}")
    transformers = need_package("transformers", "hf")
    cls_name, cfg_name, kwargs = ARCHS[name]
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(getattr(transformers, cfg_name)(**kwargs))
    model.eval()
    model.wclust_source = dict(hf_source_dict(model), arch=name)
    return model


def load_hf(directory: str) -> nn.Module:
    if not os.path.isdir(directory):
        raise WclustError(f"hf:{directory}: no such directory")
    if not os.path.isfile(os.path.join(directory, "config.json")):
        raise WclustError(f"hf:{directory}: no config.json there (not a transformers model directory)")
    transformers = need_package("transformers", "hf")
    config = transformers.AutoConfig.from_pretrained(directory)
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        model = transformers.AutoModel.from_pretrained(directory)
    else:
        model = _head_or_bare(transformers, cls, directory)
    model.eval()
    model.wclust_source = hf_source_dict(model)
    return model


def _head_or_bare(transformers, cls, directory: str) -> nn.Module:
    """``cls`` (config.json's ``architectures``) from ``directory``, unless the checkpoint lacks the
    weights of its head (every sentence-transformers export names a ...ForMaskedLM but holds the bare
    encoder): then the bare model (``AutoModel``, with the checkpoint's own pooler), said in one warning."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()   # its MISSING table: what matters is said below
    try:
        model, info = cls.from_pretrained(directory, output_loading_info=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
    head_missing = missing_head_tensors(model, info.get("missing_keys") or ())
    if not head_missing:
        return model
    n_params = sum(t.numel() for t in head_missing)
    del model
    bare = transformers.AutoModel.from_pretrained(directory)
    warnings.warn(f"hf:{directory}: config.json names {cls.__name__}, but the checkpoint lacks its head "
                  f"({n_params} parameters in {len(head_missing)} tensors would be random): "
                  f"loaded the bare {type(bare).__name__} instead", stacklevel=3)
    return bare


def missing_head_tensors(model: nn.Module, missing_keys) -> list[torch.Tensor]:
    """The distinct tensors of ``model`` outside its base model (its head) named in ``missing_keys``."""
    prefix = getattr(model, "base_model_prefix", "")
    if not prefix or getattr(model, prefix, None) is None:
        return []     # the class is the bare model itself: no head to do without
    state = model.state_dict(keep_vars=True)
    seen: dict[int, torch.Tensor] = {}
    for key in missing_keys:
        if not key.startswith(prefix + ".") and key in state:
            seen.setdefault(id(state[key]), state[key])
    return list(seen.values())


def load_timm(spec: str) -> nn.Module:
    name, _, weights = spec.partition(":")
    timm = need_package("timm", "timm")
    try:
        model = timm.create_model(name, pretrained=False)
    except RuntimeError as e:
        raise WclustError(f"timm:{name}: {e}") from None
    if weights:
        if not os.path.isfile(weights):
            raise WclustError(f"timm:{spec}: weights file {weights!r} not found")
        if weights.endswith(".safetensors"):
            from safetensors.torch import load_file
            sd = load_file(weights)
        else:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
            sd = sd.get("state_dict", sd.get("model", sd)) if isinstance(sd, dict) else sd
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing:
            raise WclustError(f"timm:{spec}: the weights file lacks {len(missing)} tensor(s), e.g. {missing[:3]}")
    model.eval()
    model.wclust_source = {"type": "timm", "name": name}
    return model


def load_zoo(name: str) -> nn.Module:
    if name not in ZOO:
        raise WclustError(f"unknown zoo model {name!r}; known: {', '.join(sorted(ZOO))}")
    mod, fn = ZOO[name].split(":")
    model = getattr(importlib.import_module(mod), fn)()
    model.eval()
    return model


def load_source(source: str) -> nn.Module:
    """A runnable nn.Module (eval mode) from a source string."""
    if not isinstance(source, str) or not source:
        raise WclustError("empty model source")
    if source.endswith(".wclust"):
        if not os.path.isfile(source):
            raise WclustError(f"{source}: " + ("a directory, not a file" if os.path.isdir(source) else "no such file"))
        from ..clustering.io import load
        return load(source)
    kind, sep, rest = source.partition(":")
    if not sep or not rest:
        if os.path.isdir(source):
            return load_hf(source)
        raise WclustError(f"cannot read model source {source!r}: use zoo:NAME, hf:DIR, timm:NAME[:WEIGHTS], "
                          "arch:NAME or a .wclust file")
    if kind == "zoo":
        return load_zoo(rest)
    if kind == "hf":
        return load_hf(rest)
    if kind == "timm":
        return load_timm(rest)
    if kind == "arch":
        return load_arch(rest)
    raise WclustError(f"unknown source kind {kind!r} in {source!r}: use zoo:, hf:, timm:, arch: or a .wclust file")


def example_inputs(model: nn.Module, batch: int = 1, seq_len: int = 128, seed: int = 0) -> dict:
    """Keyword arguments for one forward pass of a model of a known family (vision or text)."""
    g = torch.Generator().manual_seed(seed)
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "vocab_size") and not hasattr(cfg, "image_size"):
        ids = torch.randint(1000, min(cfg.vocab_size, 20000), (batch, seq_len), generator=g)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if cfg is not None and hasattr(cfg, "image_size"):
        size = cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0]
        size = min(size, 224)
        return {"pixel_values": torch.randn(batch, getattr(cfg, "num_channels", 3), size, size, generator=g)}
    pretrained = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if pretrained and "input_size" in pretrained:
        c, h, w = pretrained["input_size"]
        return {"x": torch.randn(batch, c, h, w, generator=g)}
    raise WclustError(f"no example input known for {type(model).__name__}")


def run(model: nn.Module, inputs: dict):
    """Call a model with example_inputs' output (timm models take one positional tensor)."""
    if set(inputs) == {"x"}:
        return model(inputs["x"])
    return model(**inputs)
