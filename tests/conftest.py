import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the repository


def pytest_collection_modifyitems(config, items):
    if os.environ.get("WCLUST_SLOW") or config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow (model-sized): run with WCLUST_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class TinyTransformer(torch.nn.Module):
    """Small model with every kind of layer wclust handles (and a tied head)."""

    def __init__(self, vocab=97, dim=48, hidden=80):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.patch = torch.nn.Conv2d(3, dim, 4, 4)
        self.norm = torch.nn.LayerNorm(dim)
        self.fc1 = torch.nn.Linear(dim, hidden)
        self.fc2 = torch.nn.Linear(hidden, dim)
        self.head = torch.nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids, img):
        x = self.embed(ids) + self.patch(img).flatten(2).mean(-1)[:, None, :]
        x = self.norm(x)
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(x)))
        return self.head(x)


@pytest.fixture
def tiny():
    return TinyTransformer()


@pytest.fixture
def tiny_inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 97, (2, 5), generator=g), torch.randn(2, 3, 8, 8, generator=g)


def tiny_bert():
    """A tiny random transformers BertModel, seeded (skips the test without transformers)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    return transformers.BertModel(transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=48,
                                                          max_position_embeddings=32))


def save_tiny_bert(path):
    """``tiny_bert`` saved as an hf:DIR source."""
    tiny_bert().save_pretrained(path)
    return path
