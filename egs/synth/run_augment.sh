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
#                        icefall's 3-way speed perturbation), "all:" every lhotse perturbation, and "voices:" three
#                        re-voiced copies (revoice, revoice2, revoice3: train's sentences in 120 espeak-ng voices
#                        no split uses). The copies are made once and shared by the sets.
#   --epochs-as U        updates (default): each epoch draws as many frames as the source baseline's, so every
#                        model makes the same number of updates at the same cost and the sets differ in data
#                        only; passes: each epoch is one pass over the augmented set (N copies: N+1 times the
#                        updates and the CPU time)
#   --frames-per-epoch N frames each epoch draws (asr-kd train --frames-per-epoch), instead of what --epochs-as says:
#                        e.g. four times the source baseline's with --mix-shares original=0.125 keeps train's own
#                        frames per epoch at half the source's while the copies fill the rest
#   --mix-shares SPEC    fixed shares of every epoch by group, e.g. "original=0.5": half of each epoch from train
#                        itself, the rest uniformly from the copies (asr-kd train --mix-shares; default "": uniform
#                        over the set's frames, so train's share falls as copies are added). For every model of the run:
#                        compare mixes in separate --exp-dir's (a data/ linked from the first keeps its copies)
#   --seed N             seed of the perturbations (default 0)
#   --model-seed N       seed of the networks (default: the source baseline's); members get 100*N+m as in
#                        recipes/run.sh, so a second --exp-dir with another N repeats a row at another seed
#   --model-shape S      the networks' shape instead of the source baseline's (asr-kd train --model-shape: LAYERSxWIDTH,
#                        e.g. 3x1024, or a named shape)
#   --augment SPEC       the networks' window augmentation instead of the source baseline's (asr-kd train --augment,
#                        e.g. freq_mask=8; none: off); the students' online teacher scores the masked windows
#   --num-workers N      feature, alignment and decoding processes (default 1)
#   --train-jobs N|auto  networks trained at once in each of stages 3, 5 and 6, each on (cores / N) CPU threads; auto:
#                        one per CPU core, at most the stage's networks, when they train on the CPU; 1 on a GPU
#   --distil-sets "NAME ..."  the augmented sets that also get an ensemble and a distilled student (stages 5-7;
#                        default "all"; "" for none): each costs num_members baselines, a student taught online
#                        (~2-3 baselines) and two decodes
#   --num-members N      ensemble members per distil set (default: the source's, its nnet/member*/final.pt)
#   --temperature T  --hard-weight W  --teacher-mean M   the students' distillation (default 2, 0.5, arithmetic:
#                        the recipe's)
#   (the baseline's model, optimiser, epochs and seed are the source baseline's (its params.json), but for what
#   --model-shape, --augment and --model-seed replace; the search is the source baseline decode's (its results.json
#   command): without those three, the rows differ in their training data only.
#   Members and students are trained as the baseline is, same options and updates, with recipes/run.sh's seeds:
#   member m 100*seed+m, the student the baseline's seed)
# Stages:
#   1  the perturbed copies of train (features; speed copies force-aligned with tri2) and one manifest per set
#   2  a frame bank per set, normalised with the source's bank/cmvn.json
#   3  the baseline of each set
#   4  hybrid decoding of each: dev chooses the LM weight, test-clean and test-other are decoded at it
#   5  for each distil set: the ensemble, num_members models trained as its baseline, differing in their seed
#   6  for each distil set: the distilled student, taught by that set's ensemble run online (--teacher-checkpoints:
#      a stored top-k store of an 8x bank would be ~9 GB) at T, hard weight W, as many updates as the baseline
#   7  hybrid decoding of each distil set's ensemble (all its members' --model files) and student, as in stage 4
#   8  AUGMENT.md: frame accuracies, test and test-other WER and their ratio, beside the source's non-augmented
#      baseline, ensemble and student; for each distil set the share of the ensemble's gain the student recovers
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../recipes" && pwd)
src_exp=""
exp_dir=""
stage=1
stop_stage=100
augment_sets="sp:sp0.9,sp1.1 all:sp0.9,sp1.1,volume,noise,babble,reverb,narrowband voices:revoice,revoice2,revoice3"
epochs_as=updates
frames_per_epoch=""
mix_shares=""
seed=0
model_seed=""
model_shape=""
augment=""
num_workers=1
train_jobs=auto
distil_sets=all
num_members=""
temperature=2
hard_weight=0.5
teacher_mean=arithmetic
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
[[ -z "$model_seed" || "$model_seed" =~ ^[0-9]+$ ]] \
  || { echo "$0: --model-seed is a whole number, not '$model_seed'" >&2; exit 2; }
[[ -z "$frames_per_epoch" || "$frames_per_epoch" =~ ^[0-9]+$ ]] \
  || { echo "$0: --frames-per-epoch is a whole number of frames (0: one pass over the set), not '$frames_per_epoch'" >&2; exit 2; }
# --model-shape, --augment and --mix-shares checked by the parsers that take them, before anything is written.
python -m asr_kd.bin.check_options --model-shape "$model_shape" --augment "$augment" --mix-shares "$mix_shares" || exit 2
exp_dir=${exp_dir:-$src_exp/augment}
mkdir -p "$exp_dir"
src_exp=$(cd "$src_exp" && pwd); exp_dir=$(cd "$exp_dir" && pwd)
results_dir=$exp_dir/results
. "$recipe_dir/stage_helpers.sh"

# The source baseline's training options (params.json) and search options (its decode command), one line each,
# and its frames per epoch.
source_settings() {
  python - "$1" <<'PY'
import itertools, json, shlex, sys
exp = sys.argv[1]
p = json.load(open(f"{exp}/nnet/baseline/params.json"))
train = {"--model-shape": f'{p["model"]["num_layers"]}x{p["model"]["hidden_dim"]}',
         "--num-epochs": p["num_epochs"], "--batch-size": p["batch_size"], "--lr": p["lr"], "--min-lr": p["min_lr"],
         "--optimizer": p["optimizer"], "--lr-schedule": p["lr_schedule"], "--seed": p["seed"]}
# The rest of the optimisation as the source ran it (a source before an option existed has the default).
for key in ("momentum", "weight_decay", "newbob_start_gain", "newbob_end_gain", "warmup_steps", "grad_clip",
            "max_norm", "dropout", "augment"):
    if p.get(key) is not None:
        train["--" + key.replace("_", "-")] = p[key]
words = shlex.split(json.load(open(f"{exp}/decode/baseline/results.json"))["command"])
# An option's values run to the next option (--lm-weights 9 11; a decode from before that form wrote 9,11).
search = {w: " ".join(v.replace(",", " ") for v in itertools.takewhile(lambda v: not v.startswith("--"), words[i + 1:]))
          for i, w in enumerate(words) if w in ("--lm-weights", "--extend-lm-weights", "--word-ins-penalties",
                                             "--extend-word-ins-penalties", "--beam", "--max-active", "--decoder")}
print(*(f"{k} {v}" for k, v in train.items()))
print(*(f"{k} {v}" for k, v in search.items()))
print(p["epoch_frames"])
PY
}
settings=$(source_settings "$src_exp")
{ read -r train_line; read -r search_line; read -r epoch_frames; } <<< "$settings"
read -ra train_opts <<< "$train_line"
read -ra search_opts <<< "$search_line"
source_epoch_frames=$epoch_frames
if [ "$epochs_as" = passes ]; then epoch_frames=0; fi
if [ -n "$frames_per_epoch" ]; then epoch_frames=$((10#$frames_per_epoch)); fi
if [ "$epoch_frames" -eq 0 ]; then epochs_note="one pass over the set per epoch"
elif [ "$epoch_frames" -eq "$source_epoch_frames" ]; then epochs_note="$epoch_frames frames per epoch, the source baseline's"
else epochs_note="$epoch_frames frames per epoch"; fi
[ -z "$mix_shares" ] || epochs_note+=", shares of each epoch $mix_shares"
names=$(for s in $augment_sets; do echo "${s%%:*}"; done)
for name in $distil_sets; do
  grep -qx "$name" <<< "$names" || { echo "$0: distil set '$name' is not one of --augment-sets ($names)" >&2; exit 2; }
done
# The members' count: the source's ensemble's; their seeds as recipes/run.sh derives them from the baseline's.
if [ -z "$num_members" ]; then
  # A glob follows member1 -> baseline; compgen fails when nothing matches, which pipefail would make fatal.
  num_members=$( (compgen -G "$src_exp/nnet/member*/final.pt" || true) | wc -l)
  if [ "$num_members" -eq 0 ] && [ -n "$distil_sets" ]; then
    echo "$0: no $src_exp/nnet/member*/final.pt to count the ensemble's members by: give --num-members N" >&2; exit 2
  fi
fi
# The source's options less the seed (base_opts), with --model-shape and --augment replacing the source's.
net_seed=""; base_opts=()
for ((i = 0; i < ${#train_opts[@]}; i += 2)); do
  case ${train_opts[i]} in
    --seed) net_seed=$((10#${model_seed:-${train_opts[i + 1]}})) ;;
    --model-shape) [ -n "$model_shape" ] || base_opts+=("${train_opts[@]:i:2}") ;;
    --augment) [ -n "$augment" ] || base_opts+=("${train_opts[@]:i:2}") ;;
    *) base_opts+=("${train_opts[@]:i:2}") ;;
  esac
done
[ -z "$model_shape" ] || base_opts+=(--model-shape "$model_shape")
[ -z "$augment" ] || base_opts+=(--augment "$augment")
train_opts=("${base_opts[@]}" --seed "$net_seed")
members_of() { for m in $(seq 1 "$num_members"); do echo "$exp_dir/nnet/member${m}_$1/final.pt"; done; }
# queue_training SET DIR OPTION...: queue a model in nnet/DIR on the frame bank of SET (dev from the source), as many
# frames per epoch as the source baseline; run_jobs trains the queue train_jobs at a time.
queue_training() {
  local set=$1 dir=$2; shift 2
  local mix=()
  [ -z "$mix_shares" ] || mix=(--mix-shares "$mix_shares")
  queue_job "train_$dir" python -m asr_kd.bin.train --exp-dir "$exp_dir/nnet/$dir" --frame-bank "$src_exp/bank" \
    --train-bank "$exp_dir/bank/$set" --frames-per-epoch "$epoch_frames" "${mix[@]}" "$@" --device "$device" \
    --amp "$amp"
}
# decode DIR MODEL...: dev chooses the LM weight, test-clean and test-other decoded at it, into decode/DIR.
decode() {
  local dir=$1; shift
  step "decode_$dir" python -m asr_kd.bin.decode_nnet --model "$@" \
    --graph-dir "$gmm/graph" --transition-model "$gmm/final.mdl" --cmvn "$src_exp/bank/cmvn.json" \
    --dev-cuts "$gmm/ali/cuts_dev-clean.jsonl.gz" \
    --test-cuts "$gmm/ali/cuts_test-clean.jsonl.gz" "$src_exp/data/fbank/cuts_test-other.jsonl.gz" \
    "${search_opts[@]}" --num-workers "$num_workers" --device "$device" --out-dir "$exp_dir/decode/$dir"
}
gmm=$src_exp/gmm/tri2
aug_dir=$exp_dir/data

if run_stage 1; then
  log "Stage 1: perturbed copies of train through lhotse, sets: $augment_sets"
  for s in $augment_sets; do
    perturbations=${s#*:}
    # shellcheck disable=SC2086
    step "augment_${s%%:*}" python -m asr_kd.bin.augment_data --cuts "$gmm/ali/cuts_train-clean-100.jsonl.gz" \
      --out-dir "$aug_dir" --name "${s%%:*}" --perturbations ${perturbations//,/ } --gmm-dir "$gmm" \
      --lang-dir "$src_exp/lang" --seed "$seed" --num-workers "$num_workers"
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
  queue_stage 3
  for name in $names; do
    queue_training "$name" "baseline_$name" "${train_opts[@]}"
  done
fi
run_jobs "$train_jobs" "$(wc -w <<< "$names")"

if run_stage 4; then
  log "Stage 4: hybrid decoding of each baseline (${search_opts[*]}): dev's LM weight for test-clean and test-other"
  for name in $names; do
    decode "baseline_$name" "$exp_dir/nnet/baseline_$name/final.pt"
  done
  touch "$exp_dir/.stage4.done"
fi

if run_stage 5; then
  log "Stage 5: the ${num_members}-member ensemble on each of ($distil_sets), members trained as its baseline, seeds 100*$net_seed+m"
  queue_stage 5
  for name in $distil_sets; do
    for m in $(seq 1 "$num_members"); do
      # A member's final.pt means it is complete; a killed one resumes from its checkpoint.pt.
      queue_training "$name" "member${m}_$name" "${base_opts[@]}" --seed $((100 * net_seed + m))
    done
  done
fi
run_jobs "$train_jobs" $(($(wc -w <<< "$distil_sets") * num_members))

if run_stage 6; then
  log "Stage 6: distil each ensemble of ($distil_sets) into one model on its set, teacher online, T=$temperature, hard weight $hard_weight, as many updates as the baseline"
  queue_stage 6
  for name in $distil_sets; do
    # shellcheck disable=SC2046
    queue_training "$name" "student_$name" "${train_opts[@]}" --teacher-checkpoints $(members_of "$name") \
      --teacher-mean "$teacher_mean" --temperature "$temperature" --hard-weight "$hard_weight"
  done
fi
run_jobs "$train_jobs" "$(wc -w <<< "$distil_sets")"

if run_stage 7; then
  log "Stage 7: hybrid decoding of each ensemble and student of ($distil_sets), as the baselines (${search_opts[*]})"
  for name in $distil_sets; do
    for system in student ensemble; do
      if [ $system = ensemble ]; then models=$(members_of "$name"); else models=$exp_dir/nnet/student_$name/final.pt; fi
      # shellcheck disable=SC2086
      decode "${system}_$name" $models
    done
  done
  touch "$exp_dir/.stage7.done"
fi

if run_stage 8; then
  log "Stage 8: $exp_dir/AUGMENT.md"
  rows=(--row "baseline, no augmentation (source run)" "$src_exp/nnet/baseline" "$src_exp/decode/baseline" "")
  gains=()
  if [ -f "$src_exp/decode/ensemble/results.json" ] && [ -f "$src_exp/decode/student/results.json" ]; then
    rows+=(--row "ensemble, no augmentation (source run)" "" "$src_exp/decode/ensemble" ""
      --row "distilled, no augmentation (source run)" "$src_exp/nnet/student" "$src_exp/decode/student" "")
    gains+=(--gain "no augmentation (source run)" "$src_exp/decode/baseline" "$src_exp/decode/ensemble" "$src_exp/decode/student")
  fi
  for s in $augment_sets; do
    name=${s%%:*}
    what="${s#*:}${mix_shares:+ (each epoch $mix_shares)}${model_shape:+, $model_shape}${augment:+, --augment $augment}"
    rows+=(--row "baseline, augmented: $what" "$exp_dir/nnet/baseline_$name" "$exp_dir/decode/baseline_$name" \
      "$aug_dir/$name.json")
    if grep -qx "$name" <<< "$(printf '%s\n' $distil_sets)"; then
      rows+=(--row "ensemble ($num_members), augmented: $what" "" "$exp_dir/decode/ensemble_$name" "$aug_dir/$name.json"
        --row "distilled, augmented: $what" "$exp_dir/nnet/student_$name" "$exp_dir/decode/student_$name" "$aug_dir/$name.json")
      gains+=(--gain "augmented: $what" "$exp_dir/decode/baseline_$name" "$exp_dir/decode/ensemble_$name" \
        "$exp_dir/decode/student_$name")
    fi
  done
  step table python -m asr_kd.bin.augment_table --out "$exp_dir/AUGMENT.md" --src-exp "$src_exp" "${rows[@]}" "${gains[@]}"
  touch "$exp_dir/.stage8.done"
fi

log "Finished stages $stage..$stop_stage in $exp_dir"
