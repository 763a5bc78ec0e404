#!/usr/bin/env bash
# More network seeds of a finished experiment, for the spread of Table 1, the gain recovered and Table 5.
#
# Usage: egs/synth/run_seeds.sh --src-exp DIR [--seeds "2 3"] [--preset NAME] [recipe options]
#   --src-exp DIR    a finished recipes/run.sh experiment: its corpus, features, lang, GMM and frame
#                    banks are shared (linked), only the networks are trained again
#   --seeds "S ..."  network seeds to add (recipes/run.sh --net-seed; the source experiment is seed 1)
#   --preset NAME    the source experiment's preset (same networks and decoding); by default the one it was made
#                    with (DIR/log/run.log, as `asr-kd status` reads it), and another one is refused
#   (other options go to recipes/run.sh; without --dev-parts / --test-parts, the source's, from its commands.tsv)
# Each seed runs recipes/run.sh stages 5-11 into $src_exp/seed<S>; then the source experiment's
# RESULTS.md is rewritten with means over all seeds and a "Spread over network seeds" section.
set -euo pipefail

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../recipes" && pwd)
src_exp=""
seeds="2 3"
preset=""
stage=5
stop_stage=11
num_members=""
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --src-exp) src_exp=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --num-members) num_members=$2; extra+=("$1" "$2"); shift 2 ;;
    --*) [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 2; }; extra+=("$1" "$2"); shift 2 ;;
    *) echo "$0: unexpected argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$src_exp" ] || { echo "$0: --src-exp DIR is required" >&2; exit 2; }
for f in .stage4.done bank/cmvn.json gmm/tri2/final.mdl; do
  [ -e "$src_exp/$f" ] || { echo "$0: $src_exp/$f missing: stages 0-4 of the source experiment are not done" >&2; exit 2; }
done
# Seeds of another preset would not be the source's networks: its own, as `asr-kd status` reads it (the last
# preset its run.log names, else the one whose GMM settings it ran with).
src_preset=$(python -c 'import sys; from asr_kd.report.status import experiment_preset as p; print(p(sys.argv[1]) or "")' \
  "$src_exp")
if [ -z "$preset" ]; then
  preset=$src_preset
  [ -n "$preset" ] || { echo "$0: neither $src_exp/log/run.log nor its GMM settings name a preset: give --preset" >&2; exit 2; }
elif [ -n "$src_preset" ] && [ "$preset" != "$src_preset" ]; then
  echo "$0: --preset $preset, but $src_exp was made with preset $src_preset (its log/run.log, or its GMM settings): drop --preset or give $src_preset" >&2
  exit 2
fi
[ -f "$recipe_dir/conf/$preset.conf" ] || { echo "$0: no preset '$preset' in $recipe_dir/conf" >&2; exit 2; }
if [ -z "$num_members" ]; then
  num_members=$(. "$recipe_dir/conf/$preset.conf"; echo "$num_members")
fi
src_abs=$(cd "$src_exp" && pwd)  # symlink targets; the report keeps the paths as given
exp_dir=$src_exp  # for the log helper
results_dir=$src_exp/results
. "$recipe_dir/stage_helpers.sh"
log "preset $preset (the source's: ${src_preset:-not recorded})"
# Every seed decodes and frame-scores the parts the source experiment did.
case " ${extra[*]} " in
  *" --dev-parts "* | *" --test-parts "*) ;;
  *)
    parts=$(recipe_parts "$src_exp")
    if [ -n "$parts" ]; then
      { read -r dev_parts; read -r test_parts; } <<< "$parts"
      log "the source's parts (its decode_gmm step): --dev-parts $dev_parts --test-parts $test_parts"
      extra+=(--dev-parts "$dev_parts" --test-parts "$test_parts")
    fi ;;
esac

seed_dirs=()
for s in $seeds; do
  [ "$s" -ne 1 ] || { echo "$0: seed 1 is the source experiment itself" >&2; exit 2; }
  dir=$src_exp/seed$s
  mkdir -p "$dir"
  # The stages before the networks are the source experiment's: link them and mark them done.
  for shared in corpus data lang lang_test lm gmm bank; do
    [ -e "$src_exp/$shared" ] && ln -sfn "$src_abs/$shared" "$dir/$shared"
  done
  for st in 0 1 2 3 4; do touch "$dir/.stage$st.done"; done
  log "seed $s: networks of $src_exp again with --net-seed $s in $dir"
  "$recipe_dir/run.sh" --preset "$preset" --exp-dir "$dir" --net-seed "$s" --stage "$stage" \
    --stop-stage "$stop_stage" "${extra[@]}"
  seed_dirs+=("$dir")
done

log "RESULTS.md of $src_exp with the means and spread over seeds 1 $seeds"
python -m asr_kd.bin.report --exp-dir "$src_exp" --num-members "$num_members" \
  --seed-exp-dirs "${seed_dirs[@]}" --seeds 1 $seeds
sed -n '/^## Table 1/,/^## Model sizes/p' "$src_exp/RESULTS.md" | sed '$d'
