#!/usr/bin/env bash
# Create .venv and install napari-unet with its test dependencies (idempotent).
# Usage: bash scripts/setup.sh [--gui]   (--gui also installs Xvfb and the X libraries napari needs)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--gui" ]] && ! command -v xvfb-run >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq xvfb xauth libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 \
        libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 \
        libxcb-shape0 libxcb-cursor0 libdbus-1-3 x11-utils libgl1 libegl1 libfontconfig1 >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch comes from the package index (a CUDA build that also runs on the CPU)
.venv/bin/python -m pip install -q -e ".[dev]"
