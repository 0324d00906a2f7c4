#!/usr/bin/env bash
# make-man.sh BIN_DIR PROGRAM SECTION SUMMARY OUTPUT.gz — a manual page for PROGRAM, made by
# help2man from the program's own --help and --version (so it always matches the program),
# with a COMMANDS section holding the --help of every subcommand, depth first, and SEE ALSO.
# Called at build time by cmake/Packaging.cmake; the page is compressed with gzip -9n.
set -euo pipefail
bin_dir=$1 program=$2 section=$3 summary=$4 output=$5
export PATH="$bin_dir:$PATH"  # run by name, so the usage lines say "knit", not a build path
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The subcommands a --help output lists (CLI11: indented names under "Subcommands:").
subcommands() { sed -n '/^Subcommands:/,/^$/{/^  [a-z]/{s/^  \([a-z][a-z-]*\).*/\1/;p}}' ; }
# roff-safe preformatted text: backslashes escaped, no line starting with a control character.
roff_text() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

commands() {  # commands ARGS... — the help of "PROGRAM ARGS... SUB" for every SUB, recursively
  local sub help
  for sub in $("$program" "$@" --help | subcommands); do
    help=$("$program" "$@" "$sub" --help)
    printf '.SS "%s"\n.nf\n' "$program $* $sub" | sed 's/  */ /g'
    roff_text <<<"$help"
    printf '.fi\n'
    commands "$@" "$sub"
  done
}

{
  cmds=$(commands)
  if [[ -n "$cmds" ]]; then
    printf '[COMMANDS]\n'
    printf 'Each command takes \\fB\\-\\-help\\fR; the global options above go before or after it.\n'
    printf '%s\n' "$cmds"
  fi
  printf '[FILES]\n'
  case "$program" in
    knitd|knit) printf '/etc/knit/knitd.conf (KNITD_OPTS for knitd.service), /var/lib/knit (state), /run/knit/knitd.sock (control socket)\n' ;;
    knit-coordinator) printf '/etc/knit/coordinator.conf (knit-coordinator.service), /var/lib/knit-coordinator (the mesh database and key)\n' ;;
    knit-relay) printf '/etc/knit/relay.conf (knit-relay.service; mode 0600), /var/lib/knit-relay (the relay key, cached membership)\n' ;;
  esac
  printf '[SEE ALSO]\n'
  see=""
  for page in knit.1 knitd.8 knit-coordinator.1 knit-relay.1; do
    [[ "$page" == "$program.$section" ]] && continue
    see+="${see:+, }\\fB${page%.*}\\fR(${page##*.})"
  done
  printf '%s, and /usr/share/doc/knit*/ for the packages.\n' "$see"
} >"$work/include"

help2man --no-info --no-discard-stderr --section "$section" --name "$summary" \
  --include "$work/include" --output "$work/page" "$program"
gzip -9nc "$work/page" >"$output"
