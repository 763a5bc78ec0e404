#!/usr/bin/env bash
# Training-data augmentation (issue 16): does a baseline trained on perturbed copies of train, made
# through lhotse as Kaldi's and icefall's recipes make them, hold up better on voices it has never
# heard (test-other) without losing in-domain test WER?
#
# Usage: egs/synth/run_augment.sh --src-exp DIR [--exp-dir DIR] [--stage N] [--stop-stage N] [options]
#   --src-exp DIR        a finished recipes/run.sh experiment with the never-heard part decoded (read only):
#                        gmm/tri2/ (alignments, graph), lang/, bank/ (dev bank, cmvn.json), nnet/baseline/params.json,
#                        decode/baseline/results.json, data/fbank/cuts_test-other.jsonl.gz
#   --exp-dir DIR        where this writes (default: $src_exp/augment)
#   --augment-sets "NAME:P,P ..."  the augmented training sets, each the original train cuts plus one copy per
#                        perturbation P (asr-kd augment-data --help); default "sp:sp0.9,sp1.1" (Kaldi's and
#                        icefall's 3-way speed perturbation) and "all:" every perturbation. The copies are made
#                        once and shared by the sets.
#   --epochs-as U        updates (default): each epoch draws as many frames as the source baseline's, so every
#                        model makes the same number of updates at the same cost and the sets differ in data
#                        only; passes: each epoch is one pass over the augmented set (N copies: N+1 times the
#                        updates and the CPU time)
#   --seed N             seed of the perturbations (default 0)
#   --num-jobs N         feature, alignment and decoding processes (default 1)
#   (the baseline's model, optimiser, epochs and seed are the source baseline's (its params.json); the search
#   is the source baseline decode's (its results.json command): the rows differ in their training data only)
# Stages:
#   1  the perturbed copies of train (features; speed copies force-aligned with tri2) and one manifest per set
#   2  a frame bank per set, normalised with the source's bank/cmvn.json
#   3  the baseline of each set
#   4  hybrid decoding of each: dev chooses the LM weight, test-clean and test-other are decoded at it
#   5  AUGMENT.md: test and test-other WER and their ratio, beside the source's non-augmented baseline
set -euo pipefail

recipe_dir=recipes
src_exp=""
exp_dir=""
stage=1
stop_stage=100
augment_sets="sp:sp0.9,sp1.1 all:sp0.9,sp1.1,volume,noise,babble,reverb,narrowband"
epochs_as=updates
seed=0
num_jobs=1
device=auto
amp=auto
. "$recipe_dir/parse_options.sh"

[ -n "$src_exp" ] || { echo "$0: --src-exp DIR is required" >&2; exit 2; }
for f in gmm/tri2/final.mdl gmm/tri2/graph/HCLG.fst gmm/tri2/ali/cuts_train-clean-100.jsonl.gz \
         gmm/tri2/ali/cuts_dev-clean.jsonl.gz gmm/tri2/ali/cuts_test-clean.jsonl.gz lang/words.txt \
         bank/cmvn.json bank/dev/manifest.json bank/train/manifest.json nnet/baseline/params.json \
         decode/baseline/results.json data/fbank/cuts_test-other.jsonl.gz; do
  [ -f "$src_exp/$f" ] || { echo "$0: $src_exp/$f missing: not a finished recipe run with test-other decoded" >&2; exit 2; }
done
case $epochs_as in updates|passes) ;; *) echo "$0: --epochs-as is updates or passes, not '$epochs_as'" >&2; exit 2 ;; esac
exp_dir=${exp_dir:-$src_exp/augment}
mkdir -p "$exp_dir"
src_exp=$(cd "$src_exp" && pwd); exp_dir=$(cd "$exp_dir" && pwd)
results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"

# The source baseline's training options (params.json) and search options (its decode command), one line each,
# and its frames per epoch.
source_settings() {
  python - "$1" <<'PY'
import json, shlex, sys
exp = sys.argv[1]
p = json.load(open(f"{exp}/nnet/baseline/params.json"))
train = {"--preset": p["preset"], "--num-layers": p["model"]["num_layers"], "--hidden-dim": p["model"]["hidden_dim"],
         "--num-epochs": p["num_epochs"], "--batch-size": p["batch_size"], "--lr": p["lr"], "--min-lr": p["min_lr"],
         "--optimizer": p["optimizer"], "--lr-schedule": p["lr_schedule"], "--seed": p["seed"]}
words = shlex.split(json.load(open(f"{exp}/decode/baseline/results.json"))["command"])
search = {w: words[i + 1] for i, w in enumerate(words[:-1])
          if w in ("--lm-weights", "--extend-lm-weights", "--beam", "--max-active", "--decoder")}
print(*(f"{k} {v}" for k, v in train.items()))
print(*(f"{k} {v}" for k, v in search.items()))
print(p["epoch_frames"])
PY
}
settings=$(source_settings "$src_exp")
{ read -r train_line; read -r search_line; read -r epoch_frames; } <<< "$settings"
read -ra train_opts <<< "$train_line"
read -ra search_opts <<< "$search_line"
epochs_note="$epoch_frames frames per epoch, the source baseline's"
if [ "$epochs_as" = passes ]; then epoch_frames=0; epochs_note="one pass over the set per epoch"; fi
names=$(for s in $augment_sets; do echo "${s%%:*}"; done)
gmm=$src_exp/gmm/tri2
aug_dir=$exp_dir/data

if run_stage 1; then
  log "Stage 1: perturbed copies of train through lhotse, sets: $augment_sets"
  for s in $augment_sets; do
    step "augment_${s%%:*}" python -m asr_kd.bin.augment_data --cuts "$gmm/ali/cuts_train-clean-100.jsonl.gz" \
      --out-dir "$aug_dir" --name "${s%%:*}" --perturbations "${s#*:}" --gmm-dir "$gmm" --lang-dir "$src_exp/lang" \
      --seed "$seed" --num-jobs "$num_jobs"
  done
  touch "$exp_dir/.stage1.done"
fi

if run_stage 2; then
  log "Stage 2: frame banks of the sets ($names), with the source's input normalisation ($src_exp/bank/cmvn.json)"
  for name in $names; do
    step "bank_$name" python -m asr_kd.bin.build_frame_bank --cuts "$aug_dir/cuts_$name.jsonl.gz" \
      --cmvn "$src_exp/bank/cmvn.json" --out-dir "$exp_dir/bank/$name"
  done
  touch "$exp_dir/.stage2.done"
fi

if run_stage 3; then
  log "Stage 3: the baseline on each set (${train_opts[*]}; $epochs_note)"
  for name in $names; do
    step "train_$name" python -m asr_kd.bin.train --exp-dir "$exp_dir/nnet/baseline_$name" \
      --frame-bank "$src_exp/bank" --train-bank "$exp_dir/bank/$name" --frames-per-epoch "$epoch_frames" \
      "${train_opts[@]}" --device "$device" --amp "$amp"
  done
  touch "$exp_dir/.stage3.done"
fi

if run_stage 4; then
  log "Stage 4: hybrid decoding of each baseline (${search_opts[*]}): dev's LM weight for test-clean and test-other"
  for name in $names; do
    step "decode_$name" python -m asr_kd.bin.decode_nnet --model "$exp_dir/nnet/baseline_$name/final.pt" \
      --graph-dir "$gmm/graph" --transition-model "$gmm/final.mdl" --cmvn "$src_exp/bank/cmvn.json" \
      --dev-cuts "$gmm/ali/cuts_dev-clean.jsonl.gz" \
      --test-cuts "$gmm/ali/cuts_test-clean.jsonl.gz" "$src_exp/data/fbank/cuts_test-other.jsonl.gz" \
      "${search_opts[@]}" --num-workers "$num_jobs" --device "$device" --out-dir "$exp_dir/decode/baseline_$name"
  done
  touch "$exp_dir/.stage4.done"
fi

if run_stage 5; then
  log "Stage 5: $exp_dir/AUGMENT.md"
  rows=(--row "baseline, no augmentation (source run)" "$src_exp/nnet/baseline" "$src_exp/decode/baseline" "")
  for s in $augment_sets; do
    rows+=(--row "baseline, augmented: ${s#*:}" "$exp_dir/nnet/baseline_${s%%:*}" "$exp_dir/decode/baseline_${s%%:*}" \
      "$aug_dir/${s%%:*}.json")
  done
  step table python egs/synth/local/augment_table.py --out "$exp_dir/AUGMENT.md" --src-exp "$src_exp" "${rows[@]}"
  touch "$exp_dir/.stage5.done"
fi

log "Finished stages $stage..$stop_stage in $exp_dir"
