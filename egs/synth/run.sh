#!/usr/bin/env bash
# The embedded synthesized corpus: recipes/run.sh with no --corpus-dir (stage 0 makes the corpus).
# Usage: egs/synth/run.sh [--preset tiny|mini|mini_aug|mini_transfer|paper] [--exp-dir DIR] [recipe options]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$here/../../recipes/run.sh" "$@"
