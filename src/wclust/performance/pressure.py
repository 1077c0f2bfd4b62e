"""Memory-bandwidth pressure: worker processes streaming large buffers while a benchmark runs."""
from __future__ import annotations

import multiprocessing as mp
import time

STREAM_MB = 256


def _stream_worker(stop, mb: int) -> None:
    """Copy two large buffers back and forth until ``stop`` is set (memory-bandwidth pressure)."""
    import numpy as np

    n = mb * (1 << 20) // 8
    a, b = np.ones(n), np.empty(n)
    while not stop.is_set():
        np.copyto(b, a)
        np.copyto(a, b)


class Pressure:
    """Context manager running ``n`` memory-streaming worker processes."""

    def __init__(self, n: int, mb: int = STREAM_MB):
        self.n, self.mb, self.procs = n, mb, []

    def __enter__(self):
        if self.n > 0:
            # fork: the workers only run NumPy (spawn would re-import torch in each, seconds)
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            self.stop = ctx.Event()
            self.procs = [ctx.Process(target=_stream_worker, args=(self.stop, self.mb), daemon=True)
                          for _ in range(self.n)]
            for p in self.procs:
                p.start()
            time.sleep(0.5)  # let them allocate and start streaming
        return self

    def __exit__(self, *exc):
        if self.procs:
            self.stop.set()
            for p in self.procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.terminate()
        return False
