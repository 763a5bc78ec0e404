# Sourced by recipes after option parsing; needs $exp_dir, $stage, $stop_stage and $results_dir.
#   log MESSAGE            timestamped line on stdout and in $exp_dir/log/run.log
#   run_stage N            true when stage N is inside [stage, stop_stage] and not already done
#   step NAME COMMAND...   run one Python step, recording its command line in $results_dir/commands.tsv
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
