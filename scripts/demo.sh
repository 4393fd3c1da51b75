#!/usr/bin/env bash
# Set up everything, then segment the bundled nuclei image with the bundled U-Net.
# Writes demo_output/nuclei.tif (instance labels) and demo_output/nuclei_prob.tif.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/napari-unet demo --out demo_output
