#!/usr/bin/env bash
# Deployment of the distilled model: ONNX / TorchScript exports, their parity with PyTorch, CPU decode
# cost. The paper's point in deployment terms: the distilled model keeps (part of) the ensemble's
# accuracy at one model's cost, and small distilled students trade accuracy for speed.
#
# Usage: egs/synth/run_deploy.sh --src-exp DIR [--exp-dir DIR] [--stage N] [--stop-stage N] [options]
#   --src-exp DIR      a finished recipes/run.sh experiment (read only): bank/, nnet/, gmm/tri2/, and the soft targets
#                      its student learnt from (nnet/student/params.json names them and their train bank)
#   --exp-dir DIR      where this writes (default: $src_exp/deploy)
#   --small-students   "name:layers:hidden ..." small students trained here (default "2x64:2:64 1x128:1:128"),
#                      each distilled from the main student's stored soft targets on its train bank (kd_<name>)
#   --hard-twins BOOL  also train each small student on hard labels only (hard_<name>; default true)
#   --num-threads N    intra-op threads of the network in every runtime (default 1)
#   --lm-weights L     LM weights tried on dev by the onnxruntime decode, comma-separated (PyTorch decodes at its choice);
#                      default one fixed weight, 9 (the main run's choices were 7-11), to keep the cost down
#   --dev-every N      decode every N-th dev utterance only (default 10; with one LM weight dev chooses nothing)
#   --amp A            bf16 autocast of training and frame accuracy: auto | bf16 | none (default auto: bf16 where
#                      the CPU has it); the decodes run the networks in fp32, as onnxruntime does
#   --decoder D        faster | lattice-faster (default faster, as the main recipe)
# Stages:
#   0  every N-th dev utterance (--dev-every) for the LM-weight choice
#   1  train the small students on the main student's data (its stored soft targets at T=2, hard weight 0.5, its
#      frames per epoch) / on bank/train's hard labels only, as many updates
#   2  export every system (baseline, student, ensemble members, small students) to ONNX and TorchScript,
#      parity of both runtimes with PyTorch on real dev utterances (exit non-zero beyond --tolerance)
#   3  test frame accuracy of every system
#   4  hybrid decoding of dev+test with onnxruntime in the decoder (network vs search time, fixed threads)
#   5  the same with PyTorch at the LM weight onnxruntime chose (WERs must agree; network time compared)
#   6  DEPLOY.md table in $exp_dir
#   7  the networks alone per runtime, interleaved calls (bench/bench_export.py --model-shapes): results/bench_network.txt
set -euo pipefail

src_exp=""
exp_dir=""
stage=0
stop_stage=100
small_students="2x64:2:64 1x128:1:128"
hard_twins=true
num_members=3
temperature=2
hard_weight=0.5
num_epochs=2
lr=0.1
batch_size=1024
num_threads=1
num_workers=1
lm_weights=9
dev_every=10
decode_beam=10
decode_max_active=2000
decoder=faster
amp=auto
tolerance=1e-3
parity_utterances=20
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../recipes" && pwd)
. "$recipe_dir/parse_options.sh"

[ -n "$src_exp" ] || { echo "$0: --src-exp DIR is required" >&2; exit 2; }
for f in bank/train/manifest.json bank/cmvn.json nnet/baseline/final.pt nnet/student/final.pt nnet/student/params.json \
         gmm/tri2/final.mdl gmm/tri2/graph/HCLG.fst; do
  [ -f "$src_exp/$f" ] || { echo "$0: $src_exp/$f missing: not a finished recipe run" >&2; exit 2; }
done
exp_dir=${exp_dir:-$src_exp/deploy}
results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"

nnet_src=$src_exp/nnet
# The main student's train bank (bank/train or bank/transfer), soft targets and frames per epoch.
student_info=$(student_data "$src_exp")
{ read -r student_bank; read -r student_store; read -r epoch_frames; } <<< "$student_info"
[ -f "$student_store/manifest.json" ] || { echo "$0: the main student's soft targets '$student_store' are missing (taught online?)" >&2; exit 2; }
ali_dir=$src_exp/gmm/tri2/ali
small_names=$(for s in $small_students; do n=${s%%:*}; echo "kd_$n"; if [ "$hard_twins" = true ]; then echo "hard_$n"; fi; done)
members=$(seq -f "member%g" 1 "$num_members")
systems="baseline student $small_names"
# Checkpoint of a system: the main run's, or one trained here.
ckpt() { case $1 in kd_*|hard_*) echo "$exp_dir/nnet/$1/final.pt" ;; *) echo "$nnet_src/$1/final.pt" ;; esac; }
# Models a system decodes with, in a runtime: ONNX files or checkpoints; the ensemble is its members.
models_of() {
  local sys=$1 runtime=$2 names=$1
  [ "$sys" = ensemble ] && names=$members
  for n in $names; do
    if [ "$runtime" = onnx ]; then echo "$exp_dir/export/$n/model.onnx"; else ckpt "$n"; fi
  done
}

if run_stage 0; then
  log "Stage 0: every ${dev_every}-th dev utterance (decoding dev only chooses the LM weight)"
  step dev_subset python egs/synth/local/every_nth_cuts.py --every "$dev_every" --out-dir "$exp_dir/data" \
    --cuts "$ali_dir/cuts_dev-clean.jsonl.gz"
  touch "$exp_dir/.stage0.done"
fi

if run_stage 1; then
  log "Stage 1: small students on the same train bank: distilled (T=$temperature, hard weight $hard_weight) and hard-label twins"
  for s in $small_students; do
    IFS=: read -r name layers hidden <<< "$s"
    common=(--frame-bank "$src_exp/bank" --model-shape "${layers}x$hidden" --num-epochs "$num_epochs"
      --frames-per-epoch "$epoch_frames" --batch-size "$batch_size" --lr "$lr" --optimizer sgd --lr-schedule newbob
      --seed 1 --device cpu --amp "$amp")
    step "train_kd_$name" python -m asr_kd.bin.train --exp-dir "$exp_dir/nnet/kd_$name" "${common[@]}" \
      --train-bank "$student_bank" --soft-targets-dir "$student_store" --temperature "$temperature" \
      --hard-weight "$hard_weight"
    [ "$hard_twins" = true ] || continue
    step "train_hard_$name" python -m asr_kd.bin.train --exp-dir "$exp_dir/nnet/hard_$name" "${common[@]}"
  done
  touch "$exp_dir/.stage1.done"
fi

if run_stage 2; then
  log "Stage 2: ONNX + TorchScript exports; log-posterior parity with PyTorch on $parity_utterances dev utterances (tolerance $tolerance)"
  for n in $systems $members; do
    step "export_$n" python -m asr_kd.bin.export_model --model "$(ckpt "$n")" --onnx "$exp_dir/export/$n/model.onnx" \
      --torchscript "$exp_dir/export/$n/model.ts.pt" --check-parity --frame-bank "$src_exp/bank/dev" \
      --parity-utterances "$parity_utterances" --tolerance "$tolerance" --parity-out "$results_dir/parity_$n.json"
  done
  touch "$exp_dir/.stage2.done"
fi

if run_stage 3; then
  log "Stage 3: test frame accuracy of every system (PyTorch; the exports give the same posteriors, stage 2)"
  for sys in $systems ensemble; do
    # shellcheck disable=SC2046
    step "acc_$sys" python -m asr_kd.bin.frame_accuracy --model $(models_of "$sys" torch) --frame-bank "$src_exp/bank/test" \
      --output "$results_dir/acc_${sys}_test.json" --device cpu --amp "$amp"
  done
  touch "$exp_dir/.stage3.done"
fi

dev_cuts=$exp_dir/data/cuts_dev-clean.jsonl.gz
decode_opts=(--graph-dir "$src_exp/gmm/tri2/graph" --transition-model "$src_exp/gmm/tri2/final.mdl"
  --cmvn "$src_exp/bank/cmvn.json" --dev-cuts "$dev_cuts"
  --test-cuts "$ali_dir/cuts_test-clean.jsonl.gz" --beam "$decode_beam" --max-active "$decode_max_active" --decoder "$decoder"
  --num-workers "$num_workers" --num-threads "$num_threads" --device cpu)

if run_stage 4; then
  log "Stage 4: hybrid decoding with onnxruntime in the decoder, $num_threads thread(s), LM weight chosen on dev from $lm_weights"
  for sys in $systems ensemble; do
    # shellcheck disable=SC2046,SC2086
    step "decode_${sys}_onnx" python -m asr_kd.bin.decode_nnet --model $(models_of "$sys" onnx) "${decode_opts[@]}" \
      --lm-weights ${lm_weights//,/ } --out-dir "$exp_dir/decode/${sys}_onnx"
  done
  touch "$exp_dir/.stage4.done"
fi

if run_stage 5; then
  log "Stage 5: the same decoding with PyTorch at onnxruntime's LM weight (same WER expected; network time compared)"
  for sys in $systems ensemble; do
    lmwt=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['lmwt'])" "$exp_dir/decode/${sys}_onnx/results.json")
    # shellcheck disable=SC2046
    step "decode_${sys}_torch" python -m asr_kd.bin.decode_nnet --model $(models_of "$sys" torch) "${decode_opts[@]}" \
      --lm-weights "$lmwt" --out-dir "$exp_dir/decode/${sys}_torch"
  done
  touch "$exp_dir/.stage5.done"
fi

if run_stage 6; then
  log "Stage 6: $exp_dir/DEPLOY.md: size, accuracy and CPU cost per system"
  step deploy_table python -m asr_kd.bin.deploy_table --exp-dir "$exp_dir" --src-exp "$src_exp" --systems $systems ensemble \
    --members $members --out "$exp_dir/DEPLOY.md"
  touch "$exp_dir/.stage6.done"
fi

if run_stage 7; then
  log "Stage 7: network speed per runtime, interleaved calls (robust to a busy machine): $results_dir/bench_network.txt"
  # shellcheck disable=SC2046
  # The main run's 2 x 128 (baseline, student, each member) and the small students' shapes.
  main_arch=$(python -c "import sys; from asr_kd.models import FrameClassifier; c = FrameClassifier.load(sys.argv[1]).config; print(f'{c.num_layers}x{c.hidden_dim}')" "$nnet_src/baseline/final.pt")
  archs=$(echo "$main_arch"; for s in $small_students; do IFS=: read -r _ l h <<< "$s"; echo "${l}x${h}"; done)
  classes=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['num_classes'])" "$src_exp/bank/train/manifest.json")
  step bench_network python bench/bench_export.py --model-shapes $archs \
    --num-outputs "$classes" --threads "$num_threads" --repeats 20 --batch-size 1024 > "$results_dir/bench_network.txt"
  cat "$results_dir/bench_network.txt"
  touch "$exp_dir/.stage7.done"
fi
