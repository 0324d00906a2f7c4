#!/usr/bin/env bash
# The README's first command, end to end: scripts/demo.sh builds a mesh behind real NATs
# (coordinator, two relays, agents behind public / port-restricted / symmetric NATs), prints
# `knit status` from one agent showing direct and relayed peers, pings across and cleans up.
# It exits non-zero when any ping fails or a path is not what the NAT kinds allow.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
bash "$here/../../scripts/demo.sh" > "$out" 2>&1 || rc=$?
cat "$out"
[[ $rc -eq 77 ]] && exit 77
[[ $rc -eq 0 ]] || { echo "FAIL: scripts/demo.sh exited $rc"; exit 1; }
grep -q "direct" "$out" || { echo "FAIL: the demo's status shows no direct peer"; exit 1; }
grep -q "relay" "$out" || { echo "FAIL: the demo's status shows no relayed peer"; exit 1; }
echo "demo test passed"
