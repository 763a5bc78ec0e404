#!/usr/bin/env bash
# The prepared GPU check (bench/gpu_check.py) on a machine with no network: install the wheels that
# ../shared/tools/gpu_wheels.sh fetched into .whl/ (carried with the working tree), then run the check.
# The table goes to $OUT/gpu_check.md when $OUT is set (the device runner's output folder), else bench/.
#   bench/gpu_check.sh [--device cuda] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 bench/gpu_check.py --out "${OUT:-bench}/gpu_check.md" "$@"
