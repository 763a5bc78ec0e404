#!/usr/bin/env bash
# Real LibriSpeech: point --corpus-dir at the directory holding LibriSpeech/ (or at LibriSpeech/).
# Usage: egs/librispeech/run.sh --corpus-dir /data/LibriSpeech [--preset paper] [recipe options]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case " $* " in
  *" --corpus-dir "*) ;;
  *) echo "$0: --corpus-dir DIR is required (a LibriSpeech-layout corpus)" >&2; exit 2 ;;
esac
exec "$here/../../recipes/run.sh" --preset paper "$@"
