#!/usr/bin/env bash
# Specialist models (Hinton et al. 2015, Section 5) on top of a finished recipe run's baseline: the
# generalist's confusable tied states are clustered, one specialist (its classes + a dustbin class) is
# trained per cluster from the generalist's weights, and at inference the generalist's top class picks
# the active specialists whose distributions are combined with the generalist's by the paper's KL
# objective. Reports frame accuracy with and without specialists, broken down by how many active
# specialists cover the correct state (the paper's Table 4), and WER.
#
# Usage: egs/synth/run_specialists.sh --src-exp DIR [--exp-dir DIR] [--stage N] [--stop-stage N] [options]
#   --src-exp DIR          a finished recipes/run.sh experiment (read only): bank/ (and the CMVN its banks were
#                          built with, bank/cmvn.json), nnet/baseline/, gmm/tri2/
#   --exp-dir DIR          where this writes (default: $src_exp/specialists)
#   --num-specialists K    K-means clusters = specialists (default 8)
#   --set-size N           classes per specialist, the N nearest its centroid, so sets overlap (default 300
#                          of 1500: a class in 1.6 sets on average); 0 = the disjoint K-means clusters
#   --num-epochs N         epochs per specialist (default 2)
#   (all variables below are options)
# Stages:
#   1  covariance of the generalist's predictions on train frames, K-means, sets.json
#   2  train each specialist (a finished one is skipped, an interrupted one resumes)
#   3  dev/test frame accuracy with and without specialists, by number of covering specialists
#   4  hybrid decoding of dev/test with specialists (without: the main run's decode/baseline, same options)
#   5  RESULTS.md
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../recipes" && pwd)
src_exp=""
exp_dir=""
stage=1
stop_stage=100
generalist=""                # default: $src_exp/nnet/baseline/final.pt
num_specialists=8; set_size=300; min_size=10; cov_frames=100000; seed=0
# Soft targets at T=1: collapsing onto S + dustbin does not commute with T (see asr_kd.train.specialists).
num_epochs=2; max_frames=60000; batch_size=512; lr=0.05; temperature=1; hard_weight=0.5; special_fraction=0.5
dustbin_correction=match
top_n=1; combine_steps=20
device=cpu
# The main mini run's decoding options, so that the baseline's decode is the "without" row.
lm_weights=5,7,9,11,13; decode_beam=10; decode_max_active=2000; decoder=faster; num_workers=1
. "$recipe_dir/parse_options.sh"

[ -n "$src_exp" ] || { echo "$0: --src-exp DIR is required" >&2; exit 2; }
generalist=${generalist:-$src_exp/nnet/baseline/final.pt}
for f in bank/train/manifest.json bank/dev/manifest.json bank/test/manifest.json bank/cmvn.json gmm/tri2/final.mdl \
         gmm/tri2/graph/HCLG.fst; do
  [ -f "$src_exp/$f" ] || { echo "$0: $src_exp/$f missing: not a finished recipe run" >&2; exit 2; }
done
[ -f "$generalist" ] || { echo "$0: generalist $generalist missing" >&2; exit 2; }
exp_dir=${exp_dir:-$src_exp/specialists}
mkdir -p "$exp_dir"
src_exp=$(cd "$src_exp" && pwd); exp_dir=$(cd "$exp_dir" && pwd)
generalist=$(cd "$(dirname "$generalist")" && pwd)/$(basename "$generalist")
results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"
bank=$src_exp/bank
# shellcheck disable=SC2206
decode_opts=(--graph-dir "$src_exp/gmm/tri2/graph" --transition-model "$src_exp/gmm/tri2/final.mdl"
  --cmvn "$bank/cmvn.json" --dev-cuts "$src_exp/gmm/tri2/ali/cuts_dev-clean.jsonl.gz"
  --test-cuts "$src_exp/gmm/tri2/ali/cuts_test-clean.jsonl.gz" --lm-weights ${lm_weights//,/ } --beam "$decode_beam"
  --max-active "$decode_max_active" --decoder "$decoder" --num-workers "$num_workers" --device "$device")
specialists() { ls "$exp_dir"/spec*/specialist.pt; }

if run_stage 1; then
  log "Stage 1: covariance of the generalist's predictions on $cov_frames train frames, K-means into $num_specialists sets"
  step make_sets python -m asr_kd.bin.make_specialist_sets --model "$generalist" --frame-bank "$bank/train" \
    --num-frames "$cov_frames" --num-specialists "$num_specialists" --set-size "$set_size" --min-size "$min_size" \
    --seed "$seed" --device "$device" --out "$exp_dir/sets.json"
  touch "$exp_dir/.stage1.done"
fi

if run_stage 2; then
  log "Stage 2: train the specialists ($num_epochs epochs each, half their own frames, soft targets T=$temperature)"
  num_sets=$(python -c "import json, sys; print(len(json.load(open(sys.argv[1]))['sets']))" "$exp_dir/sets.json")
  for m in $(seq 0 $((num_sets - 1))); do
    step "train_spec$m" python -m asr_kd.bin.train_specialists --sets "$exp_dir/sets.json" --only "$m" \
      --generalist "$generalist" --frame-bank "$bank" --exp-dir "$exp_dir" --num-epochs "$num_epochs" \
      --batch-size "$batch_size" --lr "$lr" --temperature "$temperature" --hard-weight "$hard_weight" \
      --special-fraction "$special_fraction" --max-frames "$max_frames" --dustbin-correction "$dustbin_correction" \
      --device "$device"
  done
  touch "$exp_dir/.stage2.done"
fi

if run_stage 3; then
  log "Stage 3: dev/test frame accuracy with and without specialists (top-$top_n generalist class picks them)"
  # shellcheck disable=SC2046
  step accuracy python -m asr_kd.bin.specialist_accuracy --generalist "$generalist" --specialists $(specialists) \
    --frame-bank "$bank/dev" "$bank/test" --output "$results_dir/acc_dev.json" "$results_dir/acc_test.json" \
    --table "$results_dir/table4.md" --top-n "$top_n" --combine-steps "$combine_steps" --device "$device"
  touch "$exp_dir/.stage3.done"
fi

if run_stage 4; then
  log "Stage 4: hybrid decoding with specialists (dev chooses the LM weight)"
  if [ ! -f "$src_exp/decode/baseline/results.json" ]; then
    step decode_generalist python -m asr_kd.bin.decode_nnet --model "$generalist" "${decode_opts[@]}" \
      --out-dir "$exp_dir/decode/generalist"
  fi
  # shellcheck disable=SC2046
  step decode_specialists python -m asr_kd.bin.decode_nnet --model "$generalist" \
    --specialists $(specialists) --specialist-top-n "$top_n" --combine-steps "$combine_steps" "${decode_opts[@]}" \
    --out-dir "$exp_dir/decode/specialists"
  touch "$exp_dir/.stage4.done"
fi

if run_stage 5; then
  log "Stage 5: $exp_dir/RESULTS.md"
  without=$src_exp/decode/baseline
  [ -f "$without/results.json" ] || without=$exp_dir/decode/generalist
  step report python -m asr_kd.bin.specialist_report --exp-dir "$exp_dir" --decode-without "$without" \
    --decode-with "$exp_dir/decode/specialists" --out "$exp_dir/RESULTS.md"
  touch "$exp_dir/.stage5.done"
fi

log "Finished stages $stage..$stop_stage in $exp_dir"
