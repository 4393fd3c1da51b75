#!/usr/bin/env bash
# Set up everything and run the whole test suite (core tests and napari GUI tests under Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --gui
# pytest exits 5 when it collects no test: that must fail, never pass silently
set +e
xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "no tests were collected: failing" >&2
    exit 1
fi
exit $rc
