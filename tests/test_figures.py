"""figures.save: whole files only, in the format the name asks for, the figure closed."""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from wclust import figures  # noqa: E402


def test_save_writes_whole_file_atomically(tmp_path):
    (tmp_path / "a.png").write_bytes(b"old")
    for name, magic in (("a.png", b"\x89PNG\r\n\x1a\n"), ("b.svg", b"<?xml"), ("c.pdf", b"%PDF")):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        path = figures.save(fig, tmp_path / name, dpi=50)
        assert open(path, "rb").read(len(magic)) == magic
        assert not plt.fignum_exists(fig.number)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.svg", "c.pdf"]  # no temp file left
