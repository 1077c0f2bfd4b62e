"""Atomic file writes: every file the package writes (models, results JSON, plots, caches) goes through here.

A writer fills a temp file in the target's own directory, named ``.NAME.PID.TID.XXXXXXXX.tmp``
(process id, thread id, random: two threads or processes never share one), fsyncs it, renames it
over the target and fsyncs the directory. A reader sees the old file or the new one, never a
half-written one. Temp files of a writer that was killed (its PID no longer runs) are removed by
the next write of the same target.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading


def jsonable(o):
    """``o`` with NaN/Inf replaced (null, "inf", "-inf") and NumPy/torch scalars as Python numbers."""
    if isinstance(o, float) and not math.isfinite(o):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        try:
            return jsonable(o.item())
        except (ValueError, AttributeError):
            pass
    return o


def stale_temp_files(path: str) -> list[str]:
    """Our own temp files for ``path`` (``.NAME.PID.*.tmp``) whose writing process is gone."""
    d, base = os.path.split(os.path.abspath(path))
    prefix, out = f".{base}.", []
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            out.append(os.path.join(d, name))
        except (PermissionError, OverflowError, OSError):
            pass  # alive (another user's) or not a pid we can ask about: leave it
    return out


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}."


def _fsync_dir(d: str) -> None:
    try:
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass   # a file system (or OS) that cannot sync a directory: the rename itself still happened


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(f)`` on a binary file object that becomes ``path`` atomically (keeping its mode)."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    for stale in stale_temp_files(path):
        try:
            os.unlink(stale)
        except OSError:
            pass
    mode = os.stat(path).st_mode & 0o777 if os.path.isfile(path) else 0o644
    try:   # name the directory, not our temp file in it
        fd, tmp = tempfile.mkstemp(dir=d, prefix=_temp_prefix(path), suffix=".tmp")
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot write {path}: directory {d} does not exist") from None
    except NotADirectoryError:
        raise NotADirectoryError(f"cannot write {path}: {d} is not a directory") from None
    except PermissionError:
        raise PermissionError(f"cannot write {path}: directory {d} is not writable") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(d)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module's docstring)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj, indent: int = 1) -> None:
    """``obj`` as JSON (NaN/Inf and NumPy scalars made plain, see ``jsonable``) written atomically."""
    atomic_write_bytes(path, (json.dumps(jsonable(obj), indent=indent) + "\n").encode())


def atomic_save_npy(path: str | os.PathLike, arr) -> None:
    """A NumPy array as a .npy file written atomically (its directory made if missing)."""
    import numpy as np

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: np.save(f, arr))


def atomic_write_dir(target: str | os.PathLike, files: dict[str, bytes]) -> bool:
    """A directory of ``files`` ({name: bytes}) that appears at ``target`` whole or not at all.

    Returns False (and leaves it) if ``target`` already exists, e.g. written meanwhile by another process."""
    target = os.fspath(target)
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=_temp_prefix(target), suffix=".tmp")
    try:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        try:
            os.rename(tmp, target)   # fails when target exists (a non-empty directory): never half-replaced
        except OSError:
            if os.path.isdir(target):
                return False
            raise
        _fsync_dir(parent)
        return True
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
