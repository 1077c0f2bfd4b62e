"""The architecture a .wclust file describes: rebuilt from its header's ``source`` (an HF config
dict and class, or a timm model name) with fresh weights, so a file loads without the original
checkpoint. Sources (``sources/models.py``) record that description when they load a model.
"""
from __future__ import annotations

import importlib

from torch import nn

from ..errors import FormatError, WclustError


def need_package(name: str, extra: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise WclustError(f"this source needs the Python package {name!r} ({e}); "
                          f"install it with: pip install 'wclust[{extra}]'") from None


def hf_source_dict(model) -> dict:
    return {"type": "hf", "class": type(model).__name__, "config": model.config.to_dict()}


def build_from_source(src: dict | None) -> nn.Module:
    """The architecture described by a saved source, with freshly initialised weights."""
    if not isinstance(src, dict):
        raise FormatError("source: the file does not describe its architecture; pass model=<skeleton> to load()")
    kind = src.get("type")
    if kind == "hf":
        transformers = need_package("transformers", "hf")
        cls_name, cfg = src.get("class"), src.get("config")
        if not isinstance(cls_name, str) or not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
            raise FormatError("source: an hf source needs 'class' and a 'config' with 'model_type'")
        cls = getattr(transformers, cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise FormatError(f"source.class: {cls_name!r} is not a transformers model class")
        cfg = dict(cfg)
        try:
            config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        except (ValueError, KeyError, TypeError) as e:
            raise FormatError(f"source.config: {e}") from None
        model = cls(config)
        model.wclust_source = src
        return model.eval()
    if kind == "timm":
        name = src.get("name")
        if not isinstance(name, str):
            raise FormatError("source.name: a timm source needs a model name")
        timm = need_package("timm", "timm")
        model = timm.create_model(name, pretrained=False)
        model.wclust_source = src
        return model.eval()
    raise FormatError(f"source.type: unknown {kind!r} (expected 'hf' or 'timm')")
