#!/usr/bin/env bash
# Teacher-assistant chains (Mirzadeh et al. 2019): does a small student learn more from the big
# teacher through assistants of intermediate size than from the teacher directly?
#
# Usage: egs/synth/run_chains.sh --src-exp DIR [--exp-dir DIR] [--config FILE] [--stage N] [--stop-stage N] [options]
#   --src-exp DIR         a finished recipes/run.sh experiment (read only): bank/, nnet/member*/, gmm/tri2/
#   --exp-dir DIR         where this writes (default: $src_exp/chains)
#   --config FILE         settings (default recipes/conf/chains_mini.conf; chains_paper.conf for a GPU)
#   --assistant-path P    assistant shapes LAYERSxWIDTH, teacher side first (e.g. "2x96 2x64"); several
#                         chains separated by ';' (e.g. "2x64; 2x96 2x64") share their common assistants
#   --student-shape S     the student's shape (e.g. 2x32)
#   (every variable of the config is an option too: --num-epochs 4, --soft-targets online ...)
# Stages:
#   1  direct: the student distilled from the teacher ensemble        -> links/<S>/
#   2  each chain: each assistant from the link before it, then the student -> links/<A1>/<A2>/.../<S>/
#   3  the same student shape on hard labels only (the baseline of that size) -> hard/<S>/
#   4  dev/test frame accuracy of every model (teacher, assistants, students)
#   5  hybrid decoding (WER) of the students on dev and test
#   6  CHAINS.md: the table in $exp_dir
# Every link resumes (make-soft-targets and train skip finished outputs); finished stages leave .stageN.done.
set -euo pipefail

recipe_dir=recipes
src_exp=""
exp_dir=""
stage=1
stop_stage=100
. "$recipe_dir/conf/chains_mini.conf"
. "$recipe_dir/parse_options.sh"

[ -n "$src_exp" ] || { echo "$0: --src-exp DIR is required" >&2; exit 2; }
if [ -z "$teacher" ]; then
  teacher=$(for m in $(seq 1 "$teacher_members"); do echo "$src_exp/nnet/member$m/final.pt"; done)
fi
for f in bank/train/manifest.json bank/dev/manifest.json bank/test/manifest.json gmm/tri2/final.mdl \
         gmm/tri2/graph/HCLG.fst data/fbank/cmvn.json; do
  [ -f "$src_exp/$f" ] || { echo "$0: $src_exp/$f missing: not a finished recipe run" >&2; exit 2; }
done
for f in $teacher; do [ -f "$f" ] || { echo "$0: teacher checkpoint $f missing" >&2; exit 2; }; done
exp_dir=${exp_dir:-$src_exp/chains}
mkdir -p "$exp_dir"
src_exp=$(cd "$src_exp" && pwd); exp_dir=$(cd "$exp_dir" && pwd)
results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"

bank=$src_exp/bank
links_dir=$exp_dir/links
train_opts=(--preset "$model_preset" --num-epochs "$num_epochs" --batch-size "$batch_size" --lr "$lr"
  --optimizer "$optimizer" --lr-schedule "$lr_schedule" --device "$device" --seed 1)
# shellcheck disable=SC2206
chain_opts=(--teacher $teacher --student-shape "$student_shape" --frame-bank "$bank" --out-dir "$links_dir"
  --soft-targets "$soft_targets" --temperature "$temperature" --hard-weight "$hard_weight" --top-k "$top_k")
[ -n "$teacher_soft_targets" ] && chain_opts+=(--teacher-soft-targets "$src_exp/$teacher_soft_targets")
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
  log "Stage 3: student shape $student_shape on hard labels only, the baseline of that size"
  step train_hard python -m asr_kd.bin.train --exp-dir "$hard_dir" --frame-bank "$bank" "${train_opts[@]}" \
    --num-layers "${student_shape%x*}" --hidden-dim "${student_shape#*x}"
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
      --output "$results_dir/acc_${name}_dev.json" "$results_dir/acc_${name}_test.json" --device "$device" < /dev/null
  done
  touch "$exp_dir/.stage4.done"
fi

chain_students=$(chain_links | awk -F'\t' '$1 == "student" {print $2}')

if run_stage 5; then
  log "Stage 5: hybrid decoding of the three $student_shape students (dev chooses the LM weight)"
  decode_opts=(--graph-dir "$src_exp/gmm/tri2/graph" --transition-model "$src_exp/gmm/tri2/final.mdl"
    --cmvn "$src_exp/data/fbank/cmvn.json" --dev-cuts "$src_exp/gmm/tri2/ali/cuts_dev-clean.jsonl.gz"
    --test-cuts "$src_exp/gmm/tri2/ali/cuts_test-clean.jsonl.gz" --lm-weights "$lm_weights" --beam "$decode_beam"
    --max-active "$decode_max_active" --num-workers "$num_workers" --device "$device")
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
    --note "Every link: $num_epochs epochs of $optimizer lr $lr ($lr_schedule), batch $batch_size, soft targets $soft_targets (top-$top_k when stored). Commands: $results_dir/commands.tsv." \
    "${rows[@]}"
  touch "$exp_dir/.stage6.done"
fi

log "Finished stages $stage..$stop_stage in $exp_dir"
