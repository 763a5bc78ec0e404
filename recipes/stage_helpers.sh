# Sourced by recipes after option parsing; needs $exp_dir, $stage, $stop_stage and $results_dir.
#   log MESSAGE            timestamped line on stdout and in $exp_dir/log/run.log
#   run_stage N            true when stage N is inside [stage, stop_stage] and not already done
#   step NAME COMMAND...   run one Python step, recording its command line in $results_dir/commands.tsv
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
  local name=$1; shift
  printf '%s\t%s\n' "$name" "$*" >> "$results_dir/commands.tsv"
  "$@"
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
