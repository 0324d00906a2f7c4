#!/usr/bin/env bash
# How fast a new agent gets a direct path: the time from `knit up` of the second agent of a pair
# to its first ping answered while its path to the first agent is "direct". Medians over the NAT
# grid's easy pairs (both sides endpoint-independent mapping; target <= 2 s) and over easy <->
# hard pairs (one side symmetric, opened by port prediction; target <= 20 s). Prints numbers,
# not pass/fail.
#
#   [kn-coord-SFX] coordinator   [kn-ra-SFX] relay+STUN   [kn-rb-SFX] relay+STUN
#            \___________________________|______________________/
#                                  [kn-core-SFX] ---- [kn-pub-SFX] anchor pub   [kn-pubx-SFX] trials
#        +-------------+-------------+---------+-----------------+-----------------+
#      [fcr] natbox  [prcr] kernel   [dblc] CGNAT                [snr] natbox       [skr] kernel
#      EIM/EIF       masquerade      [dblr] home NAT             APDM/APDF          masquerade random
#      /     \        /     \         /     \                     /     \            /     \
#   [fch1] [fch2] [prch1] [prch2]  [dblh1] [dblh2]             [snh1] [snh2]     [skh1] [skh2]
#   anchor  trials  anchor trials   anchor  trials              anchor trials     anchor trials
#
# Host 1 of every site runs an agent for the whole run (the "anchor"); each trial starts a fresh
# knitd (new node key, new UDP port) on host 2 of another site, joins it, pings the anchor every
# 0.2 s and stops at the first answer for which `knit status --json` says "direct". Then it
# leaves (`knit down`, `nodes remove`) so the anchors' maps stay small. NAT mappings of earlier
# trials cannot help later ones: every trial has a new port on a different host.
#
# Usage: bench/punch_timing.sh [-n ROUNDS] [--timeout SECONDS]
#   -n, --rounds N       times the list of pairs is run (default 1); medians over all trials
#   --timeout SECONDS    give a trial up after this long (default 40)
# Environment: KNIT_BIN (knitd, knit, knit-coordinator, knit-relay, knit-natbox), as for the tests.
set -euo pipefail

ROUNDS=1
TRIAL_TIMEOUT=40
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (( $# )); do
  case "$1" in
    -n|--rounds) ROUNDS=$2; shift 2 ;;
    --timeout) TRIAL_TIMEOUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds wants a count >= 1" >&2; exit 2; }
[[ "$TRIAL_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || { echo "--timeout wants whole seconds >= 1" >&2; exit 2; }

source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/mesh.sh"
lab_init ping nft jq nc
lab_require_impl knitd

declare -A KIND=([pub]="public" [fc]="full cone" [prc]="port-restricted" [dbl]="double NAT"
                 [sn]="symmetric (natbox)" [sk]="symmetric (kernel)")
# ANCHOR_SITE:TRIAL_SITE:CLASS — the trial agent is the second to come up.
PAIRS=(pub:fc:easy fc:prc:easy prc:dbl:easy dbl:pub:easy pub:prc:easy prc:prc:easy
       pub:sn:hard prc:sk:hard dbl:sn:hard fc:sk:hard sn:prc:hard sk:dbl:hard)

lab_step "the lab: core, coordinator, two relays, five sites of two hosts"
lab_nat_core
mesh_coordinator_start
mesh_relay_start ra
mesh_relay_start rb
lab_core_host pub
lab_core_host pubx
lab_site_natbox fc eim eif --hosts 2 --udp-timeout 30
lab_site_kernel prc port-restricted --hosts 2
lab_site_double dbl --hosts 2
lab_site_natbox sn apdm apdf --hosts 2 --udp-timeout 30
lab_site_kernel sk symmetric --hosts 2
for r in prcr dblr dblc skr; do lab_conntrack_udp_timeout "$(lab_ns "$r")" 30; done
for rw in prcr:prcw skr:skw dblc:dblw dblr:dblhw; do   # as home routers do (see mesh.sh)
  mesh_router_firewall "$(lab_ns "${rw%%:*}")" "$(lab_name "${rw#*:}")"
done
declare -A ANCHOR_NS=([pub]=$(lab_host_ns pub)) TRIAL_NS=([pub]=$(lab_host_ns pubx))
for s in fc prc dbl sn sk; do ANCHOR_NS[$s]=$(lab_site_host "$s" 1); TRIAL_NS[$s]=$(lab_site_host "$s" 2); done

lab_step "anchors: one agent on host 1 of every site"
for s in pub fc prc dbl sn sk; do
  mesh_agent_start "$s" "${ANCHOR_NS[$s]}" --log-level warn
  mesh_agent_up "$s"
done
mesh_wait_full 20

# trial N ANCHOR SITE — sets TRIAL_PING_S (first answer, any path) and TRIAL_DIRECT_S (first
# answer on a direct path), "-" when it never came.
trial() {
  local n=$1 anchor=$2 site=$3 label="t$1" t0 now first_ping="" direct="" deadline path
  mesh_agent_start "$label" "${TRIAL_NS[$site]}" --log-level warn >/dev/null
  t0=$(mesh_now_us)
  mesh_agent_up "$label" >/dev/null
  deadline=$(( t0 + TRIAL_TIMEOUT * 1000000 ))
  while (( $(mesh_now_us) < deadline )); do
    if ip netns exec "${TRIAL_NS[$site]}" ping -c 1 -W 0.2 -n -q "${MESH_IP[$anchor]}" >/dev/null 2>&1; then
      now=$(mesh_now_us)
      [[ -n "$first_ping" ]] || first_ping=$(( now - t0 ))
      path=$(mesh_path "$label" "$anchor")
      if [[ "$path" == direct ]]; then direct=$(( now - t0 )); break; fi
    fi
  done
  TRIAL_PING_S=- TRIAL_DIRECT_S=-
  [[ -n "$first_ping" ]] && TRIAL_PING_S=$(awk -v us="$first_ping" 'BEGIN { printf "%.2f", us / 1e6 }')
  [[ -n "$direct" ]] && TRIAL_DIRECT_S=$(awk -v us="$direct" 'BEGIN { printf "%.2f", us / 1e6 }')
  TRIAL_PATH=$(mesh_path "$label" "$anchor")
  mesh_agent_down "$label"
  mesh_agent_stop "$label" >/dev/null
  mesh_coordinator nodes remove "$label" >/dev/null 2>&1 || true
}

# median of the numbers on stdin; "-" (never went direct) counts as longer than any time, so
# a median that lands on one is printed as ">TIMEOUT".
median() {
  sed 's/^-$/1e9/' | sort -g | awk -v lim="$TRIAL_TIMEOUT" '{ v[NR] = $1 }
    END { if (NR == 0) { print "-"; exit }
          m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          if (m >= 1e8) print ">" lim; else printf "%.2f\n", m }'
}

unit() { if [[ "$1" == - ]]; then echo "never"; else echo "$1 s"; fi; }
lab_step "trials: ${#PAIRS[@]} pairs x $ROUNDS round(s)"
printf '%-3s %-5s %-36s %-36s %9s %10s %s\n' "#" class "first agent (up, anchor)" "second agent (new)" "1st ping" "1st direct" "path at end"
EASY=() HARD=()
n=0
for ((round = 1; round <= ROUNDS; round++)); do
  for spec in "${PAIRS[@]}"; do
    IFS=: read -r anchor site class <<<"$spec"
    n=$((n + 1))
    trial "$n" "$anchor" "$site"
    printf '%-3s %-5s %-36s %-36s %9s %10s %s\n' "$n" "$class" "$anchor: ${KIND[$anchor]}" \
      "t$n: ${KIND[$site]} (host 2)" "$(unit "$TRIAL_PING_S")" "$(unit "$TRIAL_DIRECT_S")" "$TRIAL_PATH"
    if [[ "$class" == easy ]]; then EASY+=("$TRIAL_DIRECT_S"); else HARD+=("$TRIAL_DIRECT_S"); fi
  done
done

count_ok() { local c=0 v; for v in "$@"; do [[ "$v" != - ]] && c=$((c + 1)); done; echo "$c"; }
easy_median=$(printf '%s\n' "${EASY[@]}" | median)
hard_median=$(printf '%s\n' "${HARD[@]}" | median)
verdict() { [[ "$1" == -* || "$1" == ">"* ]] && { echo "misses it: most trials never went direct"; return; }; awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "meets the target" : "misses the target" }'; }
lab_step "results: time from \`knit up\` of the second agent to its first ping over a direct path"
printf 'easy pairs:          median %s s; %d of %d trials went direct (target <= 2 s: %s)\n' \
  "$easy_median" "$(count_ok "${EASY[@]}")" "${#EASY[@]}" "$(verdict "$easy_median" 2)"
printf 'easy <-> hard pairs: median %s s; %d of %d trials went direct (target <= 20 s: %s)\n' \
  "$hard_median" "$(count_ok "${HARD[@]}")" "${#HARD[@]}" "$(verdict "$hard_median" 20)"
