#!/usr/bin/env bash
# Checks that includes point one way (docs/ARCHITECTURE.md, "Floors"): every folder may include
# only the folders listed for it, and the protocol cores include no Asio. Prints each violation
# as FILE:LINE and exits 1 if there is any. Run by CTest as the unit test `layering`.
set -euo pipefail
cd "$(dirname "$0")/.."

# folder -> the folders its files may include (besides itself)
declare -A allowed=(
  [base]=""
  [wg]="base"
  [nat]="base"
  [policy]="base"
  [control]="base wg"
  [tun]="base"
  [net]="base tun wg control"
  [localapi]="base wg"
  [dns]="base"
  [punch/stun]="base"
  [punch/portmap]="base"
  [punch/path]="base wg"
  [relay]="base wg control net"
  [coordinator]="base wg control net policy"
  [natbox]="base nat tun net"
  [agent]="base wg nat policy control tun net localapi dns punch/stun punch/portmap punch/path relay"
  [cli]="base localapi"
)
# Programs may pull in a room their library does not need.
declare -A program_extra=(
  [relay/relay_main.cpp]="punch/stun"
)
# Cores: no I/O, so no Asio. In punch/, the files named for their I/O are adapters.
cores="base wg nat policy control localapi dns punch/stun punch/portmap punch/path"
punch_adapters='/(server|mapper|[a-z_]*client|stun_main)\.(hpp|cpp)$'

# The folder a path belongs to, in $REPLY (no subshell: this runs once per include).
folder_of() {
  case "$1" in
    punch/*/*) REPLY="${1%/*}" ;;
    *) REPLY="${1%%/*}" ;;
  esac
}

status=0
files=$(find base wg nat policy control tun net localapi dns punch relay coordinator natbox agent cli -name '*.[ch]pp' | sort)
# Every quoted include, as FILE:LINE:TARGET, in one pass.
while IFS=: read -r file line target; do
  folder_of "$file"; folder=$REPLY
  [ -n "${allowed[$folder]+x}" ] || continue
  folder_of "$target"; tfolder=$REPLY
  case " $folder ${allowed[$folder]} ${program_extra[$file]:-} " in
    *" $tfolder "*) ;;
    *) echo "$file:$line: $folder/ may not include $target"; status=1 ;;
  esac
done < <(grep -Hn '^#include "' $files | sed -E 's/:#include "([^"]*)".*/:\1/')
# Asio in a core.
while IFS=: read -r file line _; do
  folder_of "$file"; folder=$REPLY
  [[ " $cores " == *" $folder "* ]] || continue
  [[ "$folder" == punch/* && "$file" =~ $punch_adapters ]] && continue
  echo "$file:$line: a core ($folder/) includes Asio"
  status=1
done < <(grep -Hn '^#include <asio' $files || true)

[ "$status" -eq 0 ] && echo "layers: every include points one way"
exit "$status"
