#!/usr/bin/env bash
# Teacher-assistant chains (Mirzadeh et al. 2019): does a small student learn more from the big
# teacher through assistants of intermediate size than from the teacher directly?
#
# Usage: egs/synth/run_chains.sh --src-exp DIR [--exp-dir DIR] [--config FILE] [--stage N] [--stop-stage N] [options]
#   --src-exp DIR         a finished recipes/run.sh experiment (read only): bank/, nnet/member*/, nnet/student/,
#                         gmm/tri2/; every link trains on its student's transfer set (bank/train, or bank/transfer
#                         with a transfer part) at its frames per epoch, and the first can reuse its soft targets
#   --exp-dir DIR         where this writes (default: $src_exp/chains)
#   --config FILE         settings (default egs/synth/conf/chains_mini.conf; chains_paper.conf for a GPU)
#   --assistant-path P    assistant shapes LAYERSxWIDTH, teacher side first (e.g. "2x96 2x64"); several
#                         chains separated by ';' (e.g. "2x64; 2x96 2x64") share their common assistants
#   --student-shape S     the student's shape (e.g. 2x32)
#   (every variable of the config is an option too: --num-epochs 4, --soft-targets online ...)
# Stages:
#   0  bank/: train -> the main student's train bank, dev -> $src_exp/bank/dev (what every link trains on)
#   1  direct: the student distilled from the teacher ensemble        -> links/<S>/
#   2  each chain: each assistant from the link before it, then the student -> links/<A1>/<A2>/.../<S>/
#   3  the same student shape on hard labels only (the baseline of that size, on bank/train) -> hard/<S>/
#   4  dev/test frame accuracy of every model (teacher, assistants, students)
#   5  hybrid decoding (WER) of the students on dev and test
#   6  CHAINS.md: the table in $exp_dir
# Every link resumes (make-soft-targets and train skip finished outputs); finished stages leave .stageN.done.
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../recipes" && pwd)
src_exp=""
exp_dir=""
stage=0
stop_stage=100
. "$(dirname "${BASH_SOURCE[0]}")/conf/chains_mini.conf"
. "$recipe_dir/parse_options.sh"

[ -n "$src_exp" ] || { echo "$0: --src-exp DIR is required" >&2; exit 2; }
if [ -z "$teacher" ]; then
  teacher=$(for m in $(seq 1 "$teacher_members"); do echo "$src_exp/nnet/member$m/final.pt"; done)
fi
for f in bank/train/manifest.json bank/dev/manifest.json bank/test/manifest.json bank/cmvn.json gmm/tri2/final.mdl \
         gmm/tri2/graph/HCLG.fst nnet/student/params.json; do
  [ -f "$src_exp/$f" ] || { echo "$0: $src_exp/$f missing: not a finished recipe run" >&2; exit 2; }
done
for f in $teacher; do [ -f "$f" ] || { echo "$0: teacher checkpoint $f missing" >&2; exit 2; }; done
exp_dir=${exp_dir:-$src_exp/chains}
mkdir -p "$exp_dir"
src_exp=$(cd "$src_exp" && pwd); exp_dir=$(cd "$exp_dir" && pwd)
results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"

bank=$src_exp/bank
# The main student's transfer set, its soft targets and its updates per epoch (its params.json).
student_info=$(student_data "$src_exp")
{ read -r student_bank; read -r student_store; read -r epoch_frames; } <<< "$student_info"
case $teacher_soft_targets in
  main)
    [ -n "$student_store" ] || { echo "$0: the main student was taught online (no store): --teacher-soft-targets ''" >&2; exit 2; }
    first_store=$student_store ;;
  "") first_store="" ;;
  *) first_store=$src_exp/$teacher_soft_targets ;;
esac
# A reused store must be of this chain's teacher (the same checkpoints).
if [ -n "$first_store" ] && [ ! -f "$first_store/manifest.json" ]; then
  echo "$0: $first_store: no soft-target store (manifest.json)" >&2; exit 2
fi
if [ -n "$first_store" ] && ! python - "$first_store/manifest.json" $teacher <<'PY'
import json, os, sys
store = sorted(os.path.realpath(c["path"]) for c in json.load(open(sys.argv[1]))["teacher"]["checkpoints"])
sys.exit(store != sorted(os.path.realpath(p) for p in sys.argv[2:]))
PY
then
  echo "$0: $first_store holds soft targets of other teacher checkpoints than $(echo $teacher); --teacher-soft-targets ''" \
    "makes them (or --teacher-members as the main run's)" >&2
  exit 2
fi
# Every link trains on the main student's train bank (distill-chain takes train/ and dev/ of one directory).
links_bank=$exp_dir/bank
links_dir=$exp_dir/links
# Each link's model shape is its own; the hard-label student's is --student-shape.
train_opts=(--num-epochs "$num_epochs" --frames-per-epoch "$epoch_frames"
  --batch-size "$batch_size" --lr "$lr" --min-lr "$min_lr" --optimizer "$optimizer" --lr-schedule "$lr_schedule"
  --device "$device" --amp "$amp" --seed 1)
# shellcheck disable=SC2206
chain_opts=(--teacher $teacher --student-shape "$student_shape" --frame-bank "$links_bank" --out-dir "$links_dir"
  --soft-targets "$soft_targets" --temperature "$temperature" --hard-weight "$hard_weight" --top-k "$top_k")
[ -n "$first_store" ] && chain_opts+=(--teacher-soft-targets "$first_store")
[ "$device" = auto ] || chain_opts+=(--device "$device")
hard_dir=$exp_dir/hard/$student_shape
direct=$student_shape
IFS=';' read -ra chains <<< "$assistant_path"
# The links of every chain: role<TAB>lineage<TAB>final.pt, teacher side first, shared assistants once.
chain_links() {
  for path in "${chains[@]}"; do
    python -m asr_kd.bin.distill_chain "${chain_opts[@]}" --assistant-path "$path" --list
  done | awk -F'\t' '!seen[$2]++'
}

if run_stage 0; then
  log "Stage 0: the links' frame bank: train = the main student's $student_bank, dev = $bank/dev"
  mkdir -p "$links_bank"
  ln -sfn "$student_bank" "$links_bank/train"
  ln -sfn "$bank/dev" "$links_bank/dev"
  touch "$exp_dir/.stage0.done"
fi

if run_stage 1; then
  log "Stage 1: student $student_shape distilled straight from the teacher (T=$temperature, hard weight $hard_weight)"
  step chain_direct python -m asr_kd.bin.distill_chain "${chain_opts[@]}" -- "${train_opts[@]}"
  touch "$exp_dir/.stage1.done"
fi

if run_stage 2; then
  for path in "${chains[@]}"; do
    log "Stage 2: chain teacher -> $(echo $path) -> $student_shape, each link taught by the one before"
    step chain_assistants python -m asr_kd.bin.distill_chain "${chain_opts[@]}" --assistant-path "$path" \
      -- "${train_opts[@]}"
  done
  touch "$exp_dir/.stage2.done"
fi

if run_stage 3; then
  log "Stage 3: student shape $student_shape on hard labels only (bank/train, as many updates), the baseline of that size"
  step train_hard python -m asr_kd.bin.train --exp-dir "$hard_dir" --frame-bank "$bank" "${train_opts[@]}" \
    --model-shape "$student_shape"
  touch "$exp_dir/.stage3.done"
fi

# name<TAB>checkpoints of every model in the table (the plan of the chain gives the links' paths).
models_table() {
  echo -e "teacher\t$(echo $teacher)"
  chain_links | cut -f2,3
  echo -e "$direct\t$links_dir/$direct/final.pt"
  echo -e "hard-$student_shape\t$hard_dir/final.pt"
}

if run_stage 4; then
  log "Stage 4: dev/test frame accuracy of the teacher, the assistants and the students"
  models_table | while IFS=$'\t' read -r name models; do
    # shellcheck disable=SC2086
    step "acc_$name" python -m asr_kd.bin.frame_accuracy --model $models --frame-bank "$bank/dev" "$bank/test" \
      --output "$results_dir/acc_${name}_dev.json" "$results_dir/acc_${name}_test.json" --device "$device" \
      --amp "$amp" < /dev/null
  done
  touch "$exp_dir/.stage4.done"
fi

chain_students=$(chain_links | awk -F'\t' '$1 == "student" {print $2}')

if run_stage 5; then
  log "Stage 5: hybrid decoding of the three $student_shape students (dev chooses the LM weight)"
  # shellcheck disable=SC2206
  decode_opts=(--graph-dir "$src_exp/gmm/tri2/graph" --transition-model "$src_exp/gmm/tri2/final.mdl"
    --cmvn "$bank/cmvn.json" --dev-cuts "$src_exp/gmm/tri2/ali/cuts_dev-clean.jsonl.gz"
    --test-cuts "$src_exp/gmm/tri2/ali/cuts_test-clean.jsonl.gz" --lm-weights ${lm_weights//,/ } --beam "$decode_beam"
    --max-active "$decode_max_active" --decoder "$decoder" --num-workers "$num_workers" --device "$device")
  for name in "$direct" $chain_students "hard-$student_shape"; do
    model=$(models_table | awk -F'\t' -v n="$name" '$1 == n {print $2}')
    step "decode_$name" python -m asr_kd.bin.decode_nnet --model "$model" "${decode_opts[@]}" \
      --out-dir "$exp_dir/decode/$name"
  done
  touch "$exp_dir/.stage5.done"
fi

if run_stage 6; then
  log "Stage 6: $exp_dir/CHAINS.md"
  rows=(--row "teacher ($(echo $teacher | wc -w) models)" "$results_dir/acc_teacher" -)
  while IFS=$'\t' read -r role name _; do
    [ "$role" = assistant ] && rows+=(--row "assistant ${name##*-} (teacher -> ${name//-/ -> })" "$results_dir/acc_$name" -)
  done < <(chain_links)
  rows+=(--row "student $student_shape, hard labels only" "$results_dir/acc_hard-$student_shape" "$exp_dir/decode/hard-$student_shape"
    --row "student $student_shape, direct (teacher -> $student_shape)" "$results_dir/acc_$direct" "$exp_dir/decode/$direct")
  for name in $chain_students; do
    rows+=(--row "student $student_shape, chain (teacher -> ${name//-/ -> })" "$results_dir/acc_$name" "$exp_dir/decode/$name")
  done
  step table python -m asr_kd.bin.results_table --out "$exp_dir/CHAINS.md" \
    --title "Teacher-assistant chains: student $student_shape, $num_epochs epochs per link, T=$temperature, hard weight $hard_weight" \
    --note "Every link: $num_epochs epochs of $epoch_frames frames ($student_bank, the main student's) of $optimizer lr $lr ($lr_schedule), batch $batch_size, soft targets $soft_targets (top-$top_k when stored${first_store:+; the first link reuses $first_store}); the hard-label student: bank/train, as many updates. Commands: $results_dir/commands.tsv." \
    "${rows[@]}"
  touch "$exp_dir/.stage6.done"
fi

log "Finished stages $stage..$stop_stage in $exp_dir"
