# Sourced by recipes after option parsing; needs $exp_dir, $stage, $stop_stage and $results_dir.
#   log MESSAGE            timestamped line on stdout and in $exp_dir/log/run.log
#   run_stage N            true when stage N is inside [stage, stop_stage] and not already done
#   step NAME COMMAND...   run one Python step, recording its command line in $results_dir/commands.tsv
#   queue_stage N          the steps queued next belong to stage N (N's .done marker waits for them)
#   queue_job NAME COMMAND...  queue a step for run_jobs (its command line recorded as step records it)
#   run_jobs N|auto [MAX]  the queued steps, N at a time, each on (CPU cores / N) threads, marking each queued
#                          stage done once its steps succeeded; then empty the queue. auto: one per core (at
#                          most MAX) when $device is the CPU, 1 on a GPU
#   bank_frames DIR        number of frames of the frame bank DIR
#   student_data EXP       train bank, soft-target store, frames per epoch of EXP's distilled student
#   recipe_parts EXP       the --dev-parts and --test-parts EXP's recipe run decoded
mkdir -p "$exp_dir/log" "$results_dir"

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" | tee -a "$exp_dir/log/run.log"
}

run_stage() {
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  if [ -f "$exp_dir/.stage$1.done" ]; then
    log "Stage $1: done before ($exp_dir/.stage$1.done), skipping"
    return 1
  fi
}

step() {
  record_step "$@"
  shift
  "$@"
}

# record_step NAME COMMAND...: the line of $results_dir/commands.tsv that `step` and `queue_job` write.
record_step() {
  local name=$1; shift
  printf '%s\t%s\n' "$name" "$*" >> "$results_dir/commands.tsv"
}

queued_stages=()
queued_names=()
queued_commands=()
queued_stage_of=()
queue_stage() {
  queued_stages+=("$1")
}
queue_job() {
  record_step "$@"
  local name=$1; shift
  queued_names+=("$name")
  queued_commands+=("$(printf '%q ' "$@")")
  queued_stage_of+=("${queued_stages[-1]}")
}

# With N = 1 the steps run one after the other in the foreground, as `step` runs them. With N > 1 each runs in
# the background with OMP_NUM_THREADS = cores / N (at least 1; also when fewer than N are queued), its output
# in $exp_dir/log/NAME.log (a trainer's end-of-epoch lines on the terminal too, in place of its progress
# bar), a new one starting whenever one ends (queue the longest first). A stage's .done marker is written as
# soon as its steps and those of the stages queued before it have all succeeded. Every step runs to its end,
# as Kaldi's run.pl lets every job of an array finish; then a step that failed fails the recipe, named with
# its log.
run_jobs() {
  local n=$1 most=${2:-0} i name failed=0 running=0 status_dir
  local stages=("${queued_stages[@]}") names=("${queued_names[@]}") commands=("${queued_commands[@]}")
  local stage_of=("${queued_stage_of[@]}")
  queued_stages=(); queued_names=(); queued_commands=(); queued_stage_of=()
  [ "${#stages[@]}" -gt 0 ] || return 0
  if [ "$n" = auto ]; then
    case ${device:-auto} in
      cpu) n=$(nproc) ;;
      cuda*) n=1 ;;
      *) n=$(python -c 'import torch; print(int(torch.cuda.is_available()))'); [ "$n" = 1 ] || n=$(nproc) ;;
    esac
    [ "$most" -lt 1 ] || [ "$n" -le "$most" ] || n=$most
  fi
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --train-jobs must be a positive number or auto, not '$n'" >&2; return 2; }
  status_dir=$(mktemp -d "$exp_dir/log/.jobs.XXXXXX")
  # Marks the stages, in order, whose steps (and the earlier stages' steps) have all exited 0.
  mark_done() {
    local st j
    for st in "${stages[@]}"; do
      for j in "${!names[@]}"; do
        [ "${stage_of[$j]}" != "$st" ] || [ "$(cat "$status_dir/${names[$j]}" 2>/dev/null)" = 0 ] || return 0
      done
      if [ ! -f "$exp_dir/.stage$st.done" ]; then
        touch "$exp_dir/.stage$st.done"
        log "Stage $st: finished"
      fi
    done
  }
  # Threads from N, not from how many steps are queued: a network trains on the same threads whether it runs
  # beside others, alone, or resumed after a kill, so that it comes out the same.
  local threads=$(($(nproc) / n))
  [ "$threads" -ge 1 ] || threads=1
  for i in "${!names[@]}"; do
    name=${names[$i]}
    if [ "$n" -le 1 ]; then
      eval "${commands[$i]}"  # a failure ends the recipe here, as `step`'s would
      echo 0 > "$status_dir/$name"
      mark_done
      continue
    fi
    if [ "$running" -ge "$n" ]; then
      wait -n
      running=$((running - 1))
      mark_done
    fi
    log "  $name: started, $threads thread(s), output in $exp_dir/log/$name.log"
    (
      set +e
      SECONDS=0
      export OMP_NUM_THREADS=$threads
      # The whole output to the log; on the terminal, the trainer's line at the end of each epoch.
      eval "${commands[$i]}" 2>&1 | tee "$exp_dir/log/$name.log" \
        | sed -u -n "s/.*\r//; s/^.*\] \(epoch [0-9]*: train loss\)/  $name: \1/p"
      status=${PIPESTATUS[0]}
      log "  $name: exit status $status after $((SECONDS / 60)) min $((SECONDS % 60)) s"
      echo "$status" > "$status_dir/$name"
    ) &
    running=$((running + 1))
  done
  while [ "$running" -gt 0 ]; do
    wait -n
    running=$((running - 1))
    mark_done
  done
  mark_done  # stages without steps
  for name in "${names[@]}"; do
    status=$(cat "$status_dir/$name" 2>/dev/null || echo "none (killed)")
    if [ "$status" != 0 ]; then
      echo "$0: step $name failed (exit status $status); its output: $exp_dir/log/$name.log" >&2
      tail -n 20 "$exp_dir/log/$name.log" >&2 || true
      failed=1
    fi
  done
  rm -rf "$status_dir"
  return "$failed"
}

bank_frames() {
  python -c 'import json, sys; print(json.load(open(sys.argv[1]))["num_frames"])' "$1/manifest.json"
}

# student_data EXP         how EXP's distilled student was trained, from EXP/nnet/student/params.json (written
#                          by the trainer), one a line: its train bank (bank/train, or bank/transfer with a
#                          transfer part), its stored soft targets ("" when taught online) and its frames per
#                          epoch. Relative paths there are the training run's (the repo root), else the same
#                          name under EXP. A new student taught from that store passes --train-bank,
#                          --soft-targets-dir and --frames-per-epoch from it. Use (so that set -e sees a failure):
#                            data=$(student_data "$src_exp"); { read -r bank; read -r store; read -r frames; } <<< "$data"
student_data() {
  python - "$1" <<'PY'
import json, os, sys
exp = sys.argv[1]
p = json.load(open(os.path.join(exp, "nnet", "student", "params.json")))
def find(path, under):
    alt = os.path.join(exp, under, os.path.basename(os.path.normpath(path or ".")))
    if path and not os.path.exists(path) and os.path.exists(alt):
        path = alt
    return os.path.abspath(path) if path else ""
bank = p["train_bank"] or os.path.join(p["frame_bank"], "train")
print(find(bank, "bank"), find(p["soft_targets_dir"], ""), p["epoch_frames"], sep="\n")
PY
}

# recipe_parts EXP         the dev and test parts EXP's recipes/run.sh decoded, from the decode_gmm step of
#                          EXP/results/commands.tsv, one a line as --dev-parts and --test-parts take them: its
#                          first part is the dev part, and it decoded the test parts, then the other dev parts,
#                          named dev-*. Nothing when EXP has no such record. Use:
#                            parts=$(recipe_parts "$src_exp"); { read -r dev_parts; read -r test_parts; } <<< "$parts"
recipe_parts() {
  python - "$1" <<'PY'
import os, shlex, sys
path = os.path.join(sys.argv[1], "results", "commands.tsv")
words = []
for line in open(path, encoding="utf-8") if os.path.isfile(path) else []:
    name, _, command = line.rstrip("\n").partition("\t")
    if name == "decode_gmm":
        words = shlex.split(command)
if "--parts" in words:
    i = words.index("--parts") + 1
    parts = []
    while i < len(words) and not words[i].startswith("--"):
        parts.append(words[i])
        i += 1
    if len(parts) > 1:
        dev, later = parts[0], parts[1:]
        tests = [p for p in later if not p.startswith("dev")]
        print(",".join([dev, *(p for p in later if p.startswith("dev"))]), ",".join(tests), sep="\n")
PY
}
