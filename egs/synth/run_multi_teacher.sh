#!/usr/bin/env bash
# Multi-teacher distillation with heterogeneous teachers: the tri2 GMM's frame posteriors, the DNN
# ensemble's, and weighted mixtures of both, each distilled into one student like the main run's.
#
# Usage: egs/synth/run_multi_teacher.sh --src-exp DIR [--exp-dir DIR] [--stage N] [--stop-stage N] [options]
#   --src-exp DIR        a finished recipes/run.sh experiment (read only): bank/ (its train bank, dev/test banks and
#                        the CMVN they were built with), nnet/member*, gmm/tri2/; the students here learn from
#                        stores made here on bank/train (labelled frames: the GMM teacher needs their cuts)
#   --exp-dir DIR        where this writes (default: $src_exp/multi_teacher)
#   --train-every N      students train on every N-th train utterance (default 1: all of them; the GMM
#                        teacher costs ~1 ms of CPU per frame, so a busy 2-core machine wants N > 1)
#   --gmm-weights "W.."  GMM shares of the GMM+ensemble mixtures (default "0.2"); the members share the rest
#   --batch-size B       students' minibatch (default 1024; the recipe uses 256 for its small subset students)
#   --gmm-acoustic-scale A   the GMM's log-likelihood scale before the prior (default 0.1, Kaldi's)
#   --top-k K            probabilities stored per frame, or auto (default: the smallest k within 0.5% of the
#                        dense soft loss; the trainer refuses a store keeping < 90% of its teacher's mass)
#   --amp A              bf16 autocast of teachers, students and scoring: auto | bf16 | none (default auto)
# Stages:
#   0  the students' train bank
#      (every N-th utterance of train, with the main run's bank/cmvn.json; its bank/train itself when N = 1)
#   1  soft-target stores at T on that bank: the ensemble, the GMM alone, GMM + ensemble at each weight
#   2  a student per store and a hard-label baseline (the main run's settings: 2 x 128, T, hard
#      weight, epochs, seed 1)
#   3  dev/test frame accuracy of every student; the GMM teacher's own (top-1 stores of dev and test)
#   4  MULTI_TEACHER.md table in $exp_dir
set -euo pipefail

src_exp=""
exp_dir=""
stage=0
stop_stage=100
train_every=1
num_members=3
temperature=2
hard_weight=0.5
top_k=auto
gmm_weights=0.2
gmm_acoustic_scale=0.1
model_shape=2x128
num_epochs=2
lr=0.1
batch_size=1024
amp=auto
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../recipes" && pwd)
. "$recipe_dir/parse_options.sh"

[ -n "$src_exp" ] || { echo "$0: --src-exp DIR is required" >&2; exit 2; }
src_exp=$(cd "$src_exp" && pwd)
for f in bank/train/manifest.json bank/dev/manifest.json bank/cmvn.json gmm/tri2/final.mdl \
         gmm/tri2/ali/cuts_train-clean-100.jsonl.gz; do
  [ -f "$src_exp/$f" ] || { echo "$0: $src_exp/$f missing: not a finished recipe run" >&2; exit 2; }
done
exp_dir=${exp_dir:-$src_exp/multi_teacher}
mkdir -p "$exp_dir"
exp_dir=$(cd "$exp_dir" && pwd)
results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"

gmm=$src_exp/gmm/tri2
cuts_dir=$gmm/ali
if [ "$train_every" -eq 1 ]; then train_bank=$src_exp/bank/train; else train_bank=$exp_dir/bank/train; fi
members=$(for m in $(seq 1 "$num_members"); do echo "$src_exp/nnet/member$m/final.pt"; done)
mixes=$(for w in $gmm_weights; do echo "gmm${w}_ens"; done)
teachers="ensemble gmm $mixes"

if run_stage 0; then
  log "Stage 0: the train bank of every ${train_every}-th utterance"
  if [ "$train_every" -ne 1 ]; then
    step train_subset python egs/synth/local/every_nth_cuts.py --every "$train_every" --out-dir "$exp_dir/data" \
      --cuts "$cuts_dir/cuts_train-clean-100.jsonl.gz"
    step bank_train python -m asr_kd.bin.build_frame_bank --cuts "$exp_dir/data/cuts_train-clean-100.jsonl.gz" \
      --num-classes "$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['num_classes'])" "$src_exp/bank/train/manifest.json")" \
      --cmvn "$src_exp/bank/cmvn.json" --out-dir "$train_bank"
  fi
  touch "$exp_dir/.stage0.done"
fi

if run_stage 1; then
  log "Stage 1: soft targets at T=$temperature on $train_bank: ensemble, tri2 GMM (acoustic scale $gmm_acoustic_scale), mixtures $gmm_weights"
  # GMM features with the speaker CMVN of the GMM's training: over all train cuts, not only the bank's.
  soft_opts=(--frame-bank "$train_bank" --gmm-cuts "$cuts_dir/cuts_train-clean-100.jsonl.gz"
    --gmm-acoustic-scale "$gmm_acoustic_scale" --temperature "$temperature" --top-k "$top_k" --device cpu --amp "$amp")
  # shellcheck disable=SC2086
  step soft_ensemble python -m asr_kd.bin.make_soft_targets --teacher $members "${soft_opts[@]}" \
    --out-dir "$exp_dir/soft/ensemble_T$temperature"
  step soft_gmm python -m asr_kd.bin.make_soft_targets --teacher "$gmm" "${soft_opts[@]}" --out-dir "$exp_dir/soft/gmm_T$temperature"
  for w in $gmm_weights; do
    share=$(python -c "import sys; print((1 - float(sys.argv[1])) / int(sys.argv[2]))" "$w" "$num_members")
    # shellcheck disable=SC2046,SC2086
    step "soft_gmm${w}_ens" python -m asr_kd.bin.make_soft_targets --teacher "$gmm" $members \
      --teacher-weights "$w" $(for _ in $members; do echo "$share"; done) "${soft_opts[@]}" \
      --out-dir "$exp_dir/soft/gmm${w}_ens_T$temperature"
  done
  touch "$exp_dir/.stage1.done"
fi

if run_stage 2; then
  log "Stage 2: a $model_shape student per store (T=$temperature, hard weight $hard_weight, $num_epochs epochs) and a hard-label baseline"
  train_opts=(--train-bank "$train_bank" --dev-bank "$src_exp/bank/dev" --model-shape "$model_shape"
    --num-epochs "$num_epochs" --batch-size "$batch_size" --lr "$lr" --optimizer sgd --lr-schedule newbob --seed 1 --device cpu
    --amp "$amp")
  step train_baseline python -m asr_kd.bin.train --exp-dir "$exp_dir/nnet/baseline" "${train_opts[@]}"
  for t in $teachers; do
    step "train_$t" python -m asr_kd.bin.train --exp-dir "$exp_dir/nnet/$t" "${train_opts[@]}" \
      --soft-targets-dir "$exp_dir/soft/${t}_T$temperature" --temperature "$temperature" --hard-weight "$hard_weight"
  done
  touch "$exp_dir/.stage2.done"
fi

if run_stage 3; then
  log "Stage 3: dev/test frame accuracy of the students; the GMM teacher's own (argmax = top-1 of a T=1 store)"
  for t in baseline $teachers; do
    step "acc_$t" python -m asr_kd.bin.frame_accuracy --model "$exp_dir/nnet/$t/final.pt" \
      --frame-bank "$src_exp/bank/dev" "$src_exp/bank/test" \
      --output "$results_dir/acc_${t}_dev.json" "$results_dir/acc_${t}_test.json" --device cpu --amp "$amp"
  done
  for part in dev test; do
    case $part in dev) cuts=cuts_dev-clean ;; *) cuts=cuts_test-clean ;; esac
    step "gmm_top1_$part" python -m asr_kd.bin.make_soft_targets --teacher "$gmm" --frame-bank "$src_exp/bank/$part" \
      --gmm-cuts "$cuts_dir/$cuts.jsonl.gz" --gmm-acoustic-scale "$gmm_acoustic_scale" --temperature 1 --top-k 1 \
      --device cpu --amp "$amp" --out-dir "$exp_dir/soft/gmm_top1_$part"
  done
  touch "$exp_dir/.stage3.done"
fi

if run_stage 4; then
  log "Stage 4: $exp_dir/MULTI_TEACHER.md"
  step multi_teacher_table python -m asr_kd.bin.multi_teacher_table --exp-dir "$exp_dir" --src-exp "$src_exp" \
    --train-bank "$train_bank" --teachers $teachers --temperature "$temperature" --out "$exp_dir/MULTI_TEACHER.md"
  touch "$exp_dir/.stage4.done"
fi
