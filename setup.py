"""Builds the plain-C kernels (no Python or PyTorch API) as one shared library loaded with ctypes.

Sources (src/wclust/csrc): the runtime, the exported API (wclust.h) and k-means in the top folder,
plain-C kernels in portable/, and one folder per ISA family, compiled only for its architecture:
x86/ on x86-64, arm64/ on aarch64 (WCLUST_TARGET_ARCH overrides the host's, for a cross build
with CC=aarch64-linux-gnu-gcc). Symbols are hidden except those wclust.h marks WC_API.

The extension is optional: without a C compiler the package still installs and falls back to
its NumPy/PyTorch implementations.
"""
import glob
import os
import platform

from setuptools import Extension, setup

CSRC = os.path.join("src", "wclust", "csrc")
ARCH_DIRS = {"x86_64": "x86", "amd64": "x86", "aarch64": "arm64", "arm64": "arm64"}


def sources(arch: str) -> list[str]:
    """The C files built for a target architecture (a machine name as platform.machine() gives)."""
    found = glob.glob(os.path.join(CSRC, "*.c")) + glob.glob(os.path.join(CSRC, "portable", "*.c"))
    sub = ARCH_DIRS.get(arch.lower())
    if sub:
        found += glob.glob(os.path.join(CSRC, sub, "*.c"))
    return sorted(found)


setup(
    ext_modules=[
        Extension(
            "wclust._libwclust",
            sources=sources(os.environ.get("WCLUST_TARGET_ARCH") or platform.machine()),
            include_dirs=[CSRC],
            extra_compile_args=["-O3", "-std=c11", "-fno-strict-aliasing", "-pthread", "-fvisibility=hidden"],
            extra_link_args=["-pthread", "-lm", "-ldl"],
            optional=True,
        )
    ]
)
