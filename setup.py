"""Builds the plain-C kernels (no Python or PyTorch API) as one shared library loaded with ctypes.

The extension is optional: without a C compiler the package still installs and falls back to
its NumPy/PyTorch implementations.
"""
import glob
import os

from setuptools import Extension, setup

sources = sorted(glob.glob(os.path.join("src", "wclust", "csrc", "*.c")))
setup(
    ext_modules=[
        Extension(
            "wclust._libwclust",
            sources=sources,
            include_dirs=[os.path.join("src", "wclust", "csrc")],
            extra_compile_args=["-O3", "-std=c11", "-fno-strict-aliasing", "-pthread"],
            extra_link_args=["-pthread", "-lm", "-ldl"],
            optional=True,
        )
    ]
)
