#!/usr/bin/env bash
# Real LibriSpeech: point --corpus-dir at the directory holding LibriSpeech/ (or at LibriSpeech/), and
# give the language resources of openslr.org/11 beside it (see README.md, "Real LibriSpeech").
# Usage: egs/librispeech/run.sh --corpus-dir /data --lexicon /data/librispeech-lexicon.txt \
#          --arpa /data/3-gram.pruned.1e-7.arpa.gz [--lm-text /data/librispeech-lm-norm.txt.gz] \
#          [--train-parts train-clean-100,train-clean-360,train-other-500] [--preset paper|mini|tiny] [recipe options]
# Without --preset: paper when an accelerator (CUDA) is present, else mini; the log says which and why.
# Without --dev-parts: dev-clean,dev-other (dev-clean chooses the LM weight, dev-other is decoded at it, as
# --test-parts' default test-clean,test-other are); give --dev-parts dev-clean for a download without dev-other.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case " $* " in
  *" --corpus-dir "*) ;;
  *) echo "$0: --corpus-dir DIR is required (a LibriSpeech-layout corpus)" >&2; exit 2 ;;
esac
case " $* " in
  *" --dev-parts "*) ;;
  *) set -- --dev-parts dev-clean,dev-other "$@" ;;
esac
case " $* " in
  *" --preset "*) exec "$here/../../recipes/run.sh" "$@" ;;
esac
# The paper's 10-member ensemble of 8 x 2560 networks is days of CPU time; mini runs on CPUs.
if python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  preset=paper; why="a CUDA device is present"
else
  preset=mini; why="no CUDA device (torch.cuda.is_available() is false); give --preset paper to insist"
fi
echo "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "$0")) preset $preset: $why"
exec "$here/../../recipes/run.sh" --preset "$preset" "$@"
