#!/usr/bin/env bash
# asr-kd recipe: from a LibriSpeech-layout corpus to the paper's tables.
#
# Usage: recipes/run.sh [--option value ...]
#   --preset NAME        tiny | mini | paper (reads recipes/conf/NAME.conf first)
#   --corpus-dir DIR     an existing LibriSpeech-layout corpus; empty = synthesize one
#   --exp-dir DIR        where every output goes
#   --stage N            first stage to run;  --stop-stage N  last stage to run
#   --num-jobs N         parallel processes
#   --seed N             corpus synthesis seed
# Stages:
#   0  synthesize the embedded corpus (skipped when --corpus-dir is given)
#   1  lhotse manifests, 40-dim fbank, CMVN stats
# A finished stage leaves $exp_dir/.stageN.done and is skipped when the recipe is rerun.
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
preset=mini
corpus_dir=""
exp_dir=""
stage=0
stop_stage=100
num_jobs=2
seed=0
corpus_preset=""

# The preset's config first, so that explicit options override it.
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--preset" ]; then j=$((i + 1)); preset=${!j}; fi
done
[ -f "$recipe_dir/conf/$preset.conf" ] || { echo "$0: no preset '$preset' in $recipe_dir/conf" >&2; exit 2; }
. "$recipe_dir/conf/$preset.conf"
. "$recipe_dir/parse_options.sh"

exp_dir=${exp_dir:-exp/$preset}
mkdir -p "$exp_dir/log"
parts="train-clean-100 dev-clean test-clean"

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" | tee -a "$exp_dir/log/run.log"
}

# run_stage N: true when stage N is inside [stage, stop_stage] and not already done.
run_stage() {
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  if [ -f "$exp_dir/.stage$1.done" ]; then
    log "Stage $1: done before ($exp_dir/.stage$1.done), skipping"
    return 1
  fi
}

if [ -z "$corpus_dir" ]; then
  corpus_dir=$exp_dir/corpus
  if run_stage 0; then
    log "Stage 0: synthesize the '$corpus_preset' corpus into $corpus_dir"
    python -m asr_kd.bin.synth_corpus --out-dir "$corpus_dir" --preset "$corpus_preset" \
      --seed "$seed" --num-workers "$num_jobs"
    touch "$exp_dir/.stage0.done"
  fi
fi

if run_stage 1; then
  log "Stage 1: lhotse manifests, 40-dim fbank and CMVN stats of $corpus_dir"
  python -m asr_kd.bin.prepare_data --corpus-dir "$corpus_dir" --exp-dir "$exp_dir" \
    --parts $parts --num-jobs "$num_jobs"
  touch "$exp_dir/.stage1.done"
fi

log "Finished stages $stage..$stop_stage in $exp_dir"
