"""Saving matplotlib figures atomically (every plot the package writes goes through ``save``)."""
from __future__ import annotations

import io
import os

from .atomic import atomic_write_bytes


def save(fig, path: str | os.PathLike, **savefig_kwargs) -> str:
    """Render ``fig`` in memory, write it to ``path`` atomically (temp file, then rename), close it.

    The format comes from the file's extension (png when it has none)."""
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format=os.path.splitext(path)[1][1:].lower() or "png", **savefig_kwargs)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
