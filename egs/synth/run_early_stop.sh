#!/usr/bin/env bash
# Early-stopped distillation (Cho & Hariharan 2019): distillation helps early in training and can
# hurt late, and a less converged teacher can be the better teacher. Compares, at equal student epochs:
#   full distillation | the soft term switched off after epoch E (--soft-until-epoch) |
#   distillation from the early-stopped teacher (the ensemble of the members' epoch-N.pt) | hard labels only.
#
# Usage: egs/synth/run_early_stop.sh --src-exp DIR [--exp-dir DIR] [--stage N] [--stop-stage N] [options]
#   --src-exp DIR          a finished recipes/run.sh experiment (read only): bank/, nnet/member*/, and the soft
#                          targets its student learnt from (nnet/student/params.json names them and their train
#                          bank: bank/train, or bank/transfer with a transfer part); the distilled students here
#                          train on that bank at the main student's frames per epoch
#   --exp-dir DIR          where this writes (default: $src_exp/early_stop)
#   --num-epochs N         epochs of every student here (default 4: the mini main run trains only 2,
#                          so switching the soft term off after epoch 2 leaves 2 hard-label epochs)
#   --soft-until-epoch E   last epoch with the soft term (default 2)
#   --teacher-epoch N      the early-stopped teacher: each member's epoch-N.pt (default 1, of 2)
#   --hard-baseline B      true: also a hard-label student of the same epochs and updates, on bank/train (false:
#                          the table shows the main run's baseline only; saves a run on a busy CPU)
#   (model, optimiser and decoding settings: the variables at the top of this script; all are options)
# Stages:
#   1  stored soft targets of the early-stopped teacher at T on the main student's train bank (the converged
#      teacher's: the main student's store, $src_exp/soft_T<T>)
#   2  the students: full, soft_until<E>, teacher_epoch<N> (and hard, with --hard-baseline true)
#   3  dev/test frame accuracy of the students and of the early-stopped teacher
#   4  hybrid decoding (WER) of the students on dev and test
#   5  EARLY_STOP.md: one table, with the main run's ensemble and 2-epoch student as references
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../recipes" && pwd)
src_exp=""
exp_dir=""
stage=1
stop_stage=100
num_members=3
num_epochs=4
soft_until_epoch=2
teacher_epoch=1
hard_baseline=true
temperature=2; hard_weight=0.5; top_k=auto
# The main mini run's student: 2 x 128 ReLU, SGD lr 0.1, batch 1024; newbob never ends a run early
# here (--newbob-end-gain 0), so that every student trains exactly num_epochs epochs.
model_shape=2x128
batch_size=1024; lr=0.1; optimizer=sgd; lr_schedule=newbob
device=auto; amp=auto
lm_weights=5,7,9,11,13; decode_beam=10; decode_max_active=2000; decoder=faster; num_workers=1
. "$recipe_dir/parse_options.sh"

[ -n "$src_exp" ] || { echo "$0: --src-exp DIR is required" >&2; exit 2; }
for f in bank/train/manifest.json bank/cmvn.json nnet/student/params.json gmm/tri2/final.mdl gmm/tri2/graph/HCLG.fst \
         $(for m in $(seq 1 "$num_members"); do echo "nnet/member$m/epoch-$teacher_epoch.pt"; done); do
  [ -f "$src_exp/$f" ] || { echo "$0: $src_exp/$f missing: not a finished recipe run (or no such epoch)" >&2; exit 2; }
done
exp_dir=${exp_dir:-$src_exp/early_stop}
mkdir -p "$exp_dir"
src_exp=$(cd "$src_exp" && pwd); exp_dir=$(cd "$exp_dir" && pwd)
results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"

bank=$src_exp/bank
# The main student's train bank (bank/train or bank/transfer), soft targets and frames per epoch.
student_info=$(student_data "$src_exp")
{ read -r student_bank; read -r student_store; read -r epoch_frames; } <<< "$student_info"
[ -f "$student_store/manifest.json" ] || { echo "$0: the main student's soft targets '$student_store' are missing (taught online?)" >&2; exit 2; }
early_teacher=$(for m in $(seq 1 "$num_members"); do echo "$src_exp/nnet/member$m/epoch-$teacher_epoch.pt"; done)
early_soft=$exp_dir/soft_T${temperature}_epoch$teacher_epoch
# Every student makes as many updates per epoch as the main student (hard: on bank/train, the rest on its bank).
train_opts=(--frame-bank "$bank" --model-shape "$model_shape"
  --num-epochs "$num_epochs" --frames-per-epoch "$epoch_frames" --batch-size "$batch_size" --lr "$lr"
  --optimizer "$optimizer" --lr-schedule "$lr_schedule" --newbob-end-gain 0 --device "$device" --amp "$amp" --seed 1)
kd_opts=(--train-bank "$student_bank" --temperature "$temperature" --hard-weight "$hard_weight")
students="full soft_until$soft_until_epoch teacher_epoch$teacher_epoch"
[ "$hard_baseline" = true ] && students="hard $students"

if run_stage 1; then
  log "Stage 1: top-$top_k soft targets at T=$temperature of the early-stopped teacher (members' epoch-$teacher_epoch.pt) on $student_bank"
  soft_device=()
  [ "$device" = auto ] || soft_device=(--device "$device")
  # shellcheck disable=SC2086
  step soft_targets_early python -m asr_kd.bin.make_soft_targets --teacher $early_teacher --frame-bank "$student_bank" \
    --out-dir "$early_soft" --temperature "$temperature" --top-k "$top_k" --amp "$amp" "${soft_device[@]}"
  touch "$exp_dir/.stage1.done"
fi

if run_stage 2; then
  log "Stage 2: $num_epochs-epoch students ($students): soft term off after epoch $soft_until_epoch, early-stopped teacher"
  for s in $students; do
    case $s in
      hard) kd=() ;;
      full) kd=("${kd_opts[@]}" --soft-targets-dir "$student_store") ;;
      soft_until*)
        kd=("${kd_opts[@]}" --soft-targets-dir "$student_store" --soft-until-epoch "$soft_until_epoch")
        # Its first E epochs are the full run's (same seed, data and loss): resume from that run's epoch-E
        # checkpoint (the trainer resumes bit-exactly) instead of training them again.
        if [ -f "$exp_dir/nnet/full/epoch-$soft_until_epoch.pt" ] && [ ! -f "$exp_dir/nnet/$s/checkpoint.pt" ]; then
          mkdir -p "$exp_dir/nnet/$s"
          cp "$exp_dir/nnet/full/epoch-$soft_until_epoch.pt" "$exp_dir/nnet/$s/checkpoint.pt"
          cp "$exp_dir/nnet/full/metrics.csv" "$exp_dir/nnet/$s/metrics.csv"  # resuming cuts it back to epoch E
        fi ;;
      teacher_epoch*) kd=("${kd_opts[@]}" --soft-targets-dir "$early_soft") ;;
    esac
    step "train_$s" python -m asr_kd.bin.train --exp-dir "$exp_dir/nnet/$s" "${train_opts[@]}" "${kd[@]}"
  done
  touch "$exp_dir/.stage2.done"
fi

if run_stage 3; then
  log "Stage 3: dev/test frame accuracy of the students and of the early-stopped teacher"
  # shellcheck disable=SC2086
  step acc_teacher_epoch python -m asr_kd.bin.frame_accuracy --model $early_teacher --frame-bank "$bank/dev" "$bank/test" \
    --output "$results_dir/acc_ensemble_epoch${teacher_epoch}_dev.json" \
    "$results_dir/acc_ensemble_epoch${teacher_epoch}_test.json" --device "$device" --amp "$amp"
  for s in $students; do
    step "acc_$s" python -m asr_kd.bin.frame_accuracy --model "$exp_dir/nnet/$s/final.pt" --frame-bank "$bank/dev" "$bank/test" \
      --output "$results_dir/acc_${s}_dev.json" "$results_dir/acc_${s}_test.json" --device "$device" --amp "$amp"
  done
  touch "$exp_dir/.stage3.done"
fi

if run_stage 4; then
  log "Stage 4: hybrid decoding of the students (dev chooses the LM weight)"
  for s in $students; do
    # shellcheck disable=SC2086
    step "decode_$s" python -m asr_kd.bin.decode_nnet --model "$exp_dir/nnet/$s/final.pt" \
      --graph-dir "$src_exp/gmm/tri2/graph" --transition-model "$src_exp/gmm/tri2/final.mdl" \
      --cmvn "$bank/cmvn.json" --dev-cuts "$src_exp/gmm/tri2/ali/cuts_dev-clean.jsonl.gz" \
      --test-cuts "$src_exp/gmm/tri2/ali/cuts_test-clean.jsonl.gz" --lm-weights ${lm_weights//,/ } --beam "$decode_beam" \
      --max-active "$decode_max_active" --decoder "$decoder" --num-workers "$num_workers" --device "$device" \
      --out-dir "$exp_dir/decode/$s"
  done
  touch "$exp_dir/.stage4.done"
fi

if run_stage 5; then
  log "Stage 5: $exp_dir/EARLY_STOP.md"
  hard_row=()
  [ "$hard_baseline" = true ] && hard_row=(--row "hard labels only, $num_epochs epochs" "$results_dir/acc_hard" "$exp_dir/decode/hard")
  store_k() { python -c 'import json, sys; print(json.load(open(sys.argv[1]))["k"])' "$1/manifest.json"; }
  src_epochs=$(awk -F, 'NR > 1 && $6 != "" {n = $1} END {print n}' "$src_exp/nnet/member1/metrics.csv")
  step table python -m asr_kd.bin.results_table --out "$exp_dir/EARLY_STOP.md" \
    --title "Early-stopped distillation: $model_shape students, $num_epochs epochs, T=$temperature, hard weight $hard_weight" \
    --row "teacher: ${num_members}x ensemble, converged (epoch $src_epochs, main run)" "$src_exp/results/acc_ensemble" "$src_exp/decode/ensemble" \
    --row "teacher: ${num_members}x ensemble, early-stopped (epoch $teacher_epoch)" "$results_dir/acc_ensemble_epoch$teacher_epoch" - \
    --row "main run's student: full distillation, $src_epochs epochs" "$src_exp/results/acc_student" "$src_exp/decode/student" \
    --row "main run's baseline: hard labels only, $src_epochs epochs" "$src_exp/results/acc_baseline" "$src_exp/decode/baseline" \
    "${hard_row[@]}" \
    --row "full distillation, $num_epochs epochs" "$results_dir/acc_full" "$exp_dir/decode/full" \
    --row "soft term off after epoch $soft_until_epoch" "$results_dir/acc_soft_until$soft_until_epoch" "$exp_dir/decode/soft_until$soft_until_epoch" \
    --row "early-stopped teacher (epoch $teacher_epoch), $num_epochs epochs" "$results_dir/acc_teacher_epoch$teacher_epoch" "$exp_dir/decode/teacher_epoch$teacher_epoch" \
    --note "Students: $num_epochs epochs of $epoch_frames frames ($student_bank; hard labels only: bank/train) of $optimizer lr $lr ($lr_schedule, never stopped early), batch $batch_size; stored soft targets: the converged teacher's top-$(store_k "$student_store") ($student_store), the early-stopped teacher's top-$(store_k "$early_soft"). Commands: $results_dir/commands.tsv."
  touch "$exp_dir/.stage5.done"
fi

log "Finished stages $stage..$stop_stage in $exp_dir"
