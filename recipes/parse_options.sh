# Sourced by a recipe after its defaults: turns `--some-name value` into some_name=value.
# As in Kaldi, only variables the recipe already defines can be set (a typo is an error), and
# `--config FILE` sources FILE (shell assignments) at that point of the command line, so options
# after it win over the file. `--help` prints the recipe's header comment and the variables.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
      exit 0 ;;
    --config)
      [ $# -ge 2 ] || { echo "$0: --config needs a file" >&2; exit 2; }
      [ -f "$2" ] || { echo "$0: config file $2 does not exist" >&2; exit 2; }
      # shellcheck disable=SC1090
      . "$2"
      shift 2 ;;
    --*=*)
      echo "$0: write options as '--name value', not '$1'" >&2; exit 2 ;;
    --*)
      name=$(echo "${1#--}" | tr '-' '_')
      if ! declare -p "$name" >/dev/null 2>&1; then
        echo "$0: unknown option $1 (no variable '$name' in the recipe)" >&2; exit 2
      fi
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 2; }
      printf -v "$name" '%s' "$2"
      shift 2 ;;
    *) break ;;
  esac
done
