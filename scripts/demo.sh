#!/usr/bin/env bash
# Knit demo: a whole mesh in network namespaces — a coordinator and two relays "on the
# internet", and four agents behind different kinds of NAT. Agents find direct paths through
# the NATs by hole punching (port prediction for the symmetric ones) and fall back to a relay
# where no direct path can exist.
#
#   [kn-coord-SFX] knit-coordinator   [kn-ra-SFX] knit-relay ra    [kn-rb-SFX] knit-relay rb
#   192.0.2.1:7443                    192.0.2.17:443, STUN :3478   192.0.2.33:443, STUN :3478
#            \______________________________|_______________________________/
#                                     [kn-core-SFX] "the internet" ------ [kn-alpha-SFX] alpha
#                                        /             \                  192.0.2.49, no NAT
#                [kn-br-SFX] kernel masquerade   [kn-gr-SFX] masquerade random   [kn-dr-SFX] knit-natbox
#                port-restricted cone            symmetric                       APDM/APDF, symmetric
#                203.0.113.1                     203.0.113.17                    203.0.113.33
#                      |                               |                               |
#                [kn-bh1-SFX] beta 10.1.0.2     [kn-gh1-SFX] gamma 10.2.0.2     [kn-dh1-SFX] delta 10.3.0.2
#
# Expected paths: alpha and beta reach everyone directly (beta <-> gamma/delta by port
# prediction: allow ~20 s); gamma <-> delta, both symmetric, go through a relay. The demo shows
# `knit status` from gamma (direct and relayed peers), pings across every pair with `knit ping`,
# and cleans up; with --keep it stays up until Ctrl-C and says how to look around.
#
# Usage: sudo scripts/demo.sh [--keep]
# Environment: KNIT_BIN — folder holding knitd, knit, knit-coordinator, knit-relay, knit-natbox
#              (default: build/bin under the repo root)
set -euo pipefail

KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $arg (try --help)" >&2; exit 2 ;;
  esac
done

source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/mesh.sh"
lab__find_knit_bin
for tool in knitd knit knit-coordinator knit-relay knit-natbox; do
  if [[ ! -x "$KNIT_BIN/$tool" ]]; then
    echo "$tool was not found at $KNIT_BIN/$tool." >&2
    echo "Build it first (cmake -S . -B build && cmake --build build) or point KNIT_BIN at its folder." >&2
    exit 1
  fi
done
lab_init ping nft jq nc

say() { printf '\n>>> %s\n' "$*"; }
AGENTS=(alpha beta gamma delta)
declare -A WHERE=([alpha]="no NAT" [beta]="port-restricted cone NAT" [gamma]="symmetric NAT (kernel)"
                  [delta]="symmetric NAT (knit-natbox)")

say "Building a small internet in network namespaces: a core router, the coordinator, two relays."
lab_nat_core
mesh_coordinator_start >/dev/null
echo "    knit-coordinator on $MESH_COORD_ADDR ($(lab_host_ns coord))"
for r in ra rb; do
  mesh_relay_start "$r" >/dev/null
  echo "    knit-relay $r on ${MESH_RELAY_ADDR[$r]}:$MESH_RELAY_PORT (TCP), STUN on UDP $MESH_STUN_PORT ($(lab_host_ns "$r"))"
done

say "Four sites: one host on the internet, three behind NAT routers (30 s UDP mapping timeout)."
lab_core_host alpha >/dev/null
lab_site_kernel b port-restricted >/dev/null
lab_site_kernel g symmetric >/dev/null
lab_site_natbox d apdm apdf --udp-timeout 30 >/dev/null
for r in br gr; do
  lab_conntrack_udp_timeout "$(lab_ns "$r")" 30
  mesh_router_firewall "$(lab_ns "$r")" "$(lab_name "${r:0:1}w")"   # no new flows to the router itself
done
declare -A NS=([alpha]=$(lab_host_ns alpha) [beta]=$(lab_site_host b) [gamma]=$(lab_site_host g)
               [delta]=$(lab_site_host d))
declare -A PUBLIC=([alpha]=$(lab_host_addr alpha) [beta]=$(lab_site_public b) [gamma]=$(lab_site_public g)
                   [delta]=$(lab_site_public d))
for a in "${AGENTS[@]}"; do
  printf '    %-6s %-28s public address %-13s namespace %s\n' "$a" "${WHERE[$a]}" "${PUBLIC[$a]}" "${NS[$a]}"
done

say "Starting knitd on each host and joining the mesh with one reusable token (knit up --token ...)."
for a in "${AGENTS[@]}"; do
  mesh_agent_start "$a" "${NS[$a]}" --log-level warn >/dev/null
  mesh_agent_up "$a" >/dev/null
  printf '    %-6s joined as %s\n' "$a" "${MESH_IP[$a]}"
done
mesh_wait_full 20

# Traffic keeps a path in use; probing and prediction run while it flows.
for a in "${AGENTS[@]}"; do
  for b in "${AGENTS[@]}"; do
    [[ "$a" < "$b" ]] && lab_bg "ping-$a-$b" "${NS[$a]}" timeout 3600 sh -c 'exec ping -n -q -i 1 "$1" >/dev/null 2>&1' sh "${MESH_IP[$b]}"
  done
done
say "Hole punching: waiting until every pair that can be direct is (at most 60 s)."
want() { if [[ "$1$2" == gammadelta || "$1$2" == deltagamma ]]; then echo relay; else echo direct; fi; }
all_settled() {
  local a b
  for a in "${AGENTS[@]}"; do
    for b in "${AGENTS[@]}"; do
      [[ "$a" == "$b" ]] && continue
      [[ "$(mesh_path "$a" "$b")" == "$(want "$a" "$b")" ]] || return 1
    done
  done
}
t0=$(mesh_now_us)
if lab_poll 60 all_settled; then
  echo "    settled after $(awk -v us="$(( $(mesh_now_us) - t0 ))" 'BEGIN { printf "%.1f", us / 1e6 }') s"
else
  echo "    not every pair reached its expected path within 60 s; showing what there is"
fi

say "knit status on gamma (behind a symmetric NAT): direct paths, and the relay for delta."
mesh_knit gamma status | sed 's/^/    /'

say "knit ping across every pair (path and round-trip time as knit sees them):"
failed=0
for a in "${AGENTS[@]}"; do
  for b in "${AGENTS[@]}"; do
    [[ "$a" == "$b" ]] && continue
    printf '    %-6s -> %-6s ' "$a" "$b"
    if out=$(mesh_knit "$a" ping --count 3 "$b" 2>&1); then
      tail -n 1 <<<"$out"
    else
      failed=1
      echo "FAILED: $(tail -n 1 <<<"$out")"
    fi
  done
done

if (( KEEP )); then
  say "The mesh stays up. Try, in another terminal:"
  for a in gamma alpha; do
    echo "    ip netns exec ${NS[$a]} $KNIT_BIN/knit --socket $LAB_DIR/state/${MESH_AGENT_IF[$a]}/knitd.sock status"
  done
  echo "    ip netns exec ${NS[beta]} $KNIT_BIN/knit --socket $LAB_DIR/state/${MESH_AGENT_IF[beta]}/knitd.sock ping delta"
  echo "    ip netns exec ${NS[delta]} ping ${MESH_IP[alpha]}"
  echo "    $KNIT_BIN/knit-coordinator --state-dir $MESH_COORD_STATE nodes list"
  echo "    $KNIT_BIN/knit-coordinator --state-dir $MESH_COORD_STATE relays list"
  echo "    ip netns list | grep $LAB_SFX       # every namespace of this demo"
  echo "Press Ctrl-C to tear everything down."
  trap 'echo; say "Ctrl-C: cleaning up."; exit 0' INT
  trap 'say "Terminated: cleaning up."; exit 0' TERM
  while :; do sleep 1; done
fi

if (( failed )); then
  say "Some pings failed: the logs follow. Cleaning up."
  exit 1
fi
say "Done. Cleaning up: stopping the daemons and deleting the namespaces."
