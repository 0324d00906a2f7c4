#!/usr/bin/env bash
# How fast a new agent reaches its peers, with ONE relay, behind kernel routers with and without
# a WAN input firewall: per pair class (easy <-> easy, easy <-> symmetric, symmetric <->
# symmetric) and router kind, the time from `knit up` returning to the first packet answered
# (any path; target < 1 s) and from the first traffic to the first answer over a direct path
# (easy <= 1 s; easy <-> symmetric median <= 10 s, max <= 30 s). Medians and maxima. Prints
# numbers, not pass/fail.
#
#   [kn-coord-SFX] coordinator   [kn-ra-SFX] the one relay, STUN on :3478 and :3479
#            \___________________________|
#                                  [kn-core-SFX] ---- [kn-pub-SFX] anchor pub   [kn-pubx-SFX] trials
#     +-----------+--------------+--------------+-----------+-------------+--------------+--------------+
#   [fcr] natbox [prcr] kernel  [pror] kernel  [dblc] CGNAT [snr] natbox  [skr] kernel   [skor] kernel
#   EIM/EIF      masquerade     masquerade     [dblr] home  APDM/APDF     masq. random   masq. random
#                WAN firewall   NO firewall                               WAN firewall   NO firewall
#   each site: host 1 (anchor), host 2 (trials)
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
#   --pairs SPEC,...     run only these pairs (ANCHOR:SITE:CLASS:ROUTERS as in PAIRS below,
#                        e.g. pro:dbl:easy:open), to repeat one case
# Environment: PUNCH_LOG_LEVEL (default warn) is the knitd log level of the agents (LAB_KEEP_LOGS=1
#   keeps their logs); PUNCH_CONNTRACK="pror dblc" saves those routers' UDP conntrack tables at
#   the end of every trial (ct-tN-ROUTER.txt in the kept directory).
# Environment: KNIT_BIN (knitd, knit, knit-coordinator, knit-relay, knit-natbox), as for the tests.
set -euo pipefail

ROUNDS=1
TRIAL_TIMEOUT=40
ONLY_PAIRS=""
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (( $# )); do
  case "$1" in
    -n|--rounds) ROUNDS=$2; shift 2 ;;
    --timeout) TRIAL_TIMEOUT=$2; shift 2 ;;
    --pairs) ONLY_PAIRS=$2; shift 2 ;;
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

declare -A KIND=([pub]="public" [fc]="full cone" [prc]="port-restricted fw" [pro]="port-restricted open"
                 [dbl]="double NAT" [sn]="symmetric (natbox)" [sk]="symmetric kernel fw"
                 [sko]="symmetric kernel open")
# ANCHOR_SITE:TRIAL_SITE:CLASS:ROUTERS — the trial agent is the second to come up. CLASS: easy
# (both EIM), hard (easy <-> symmetric), sym (symmetric <-> symmetric: relay; first packet only).
# ROUTERS: fw (kernel routers with a WAN input firewall), open (without one); natbox, public and
# double-NAT sites count as fw. A pair counts as open when one side is behind an open router
# (pro, sko): pro <-> double NAT and pro <-> symmetric are the pairs that stayed on the relay
# before knitd held its full pings back until its relay admitted it (branch remap).
PAIRS=(pub:fc:easy:fw fc:prc:easy:fw prc:dbl:easy:fw dbl:pub:easy:fw pub:prc:easy:fw prc:prc:easy:fw
       pub:sn:hard:fw prc:sk:hard:fw dbl:sn:hard:fw fc:sk:hard:fw sn:prc:hard:fw sk:dbl:hard:fw
       sn:sk:sym:fw sk:sn:sym:fw
       pub:pro:easy:open fc:pro:easy:open pro:dbl:easy:open pro:fc:easy:open prc:pro:easy:open
       dbl:pro:easy:open
       pub:sko:hard:open pro:sko:hard:open fc:sko:hard:open sko:pro:hard:open dbl:sko:hard:open
       pro:sn:hard:open sn:pro:hard:open pro:sk:hard:open
       sko:sn:sym:open sn:sko:sym:open)
if [[ -n "$ONLY_PAIRS" ]]; then
  IFS=, read -ra PAIRS <<<"$ONLY_PAIRS"
  for spec in "${PAIRS[@]}"; do
    [[ "$spec" =~ ^(pub|fc|prc|pro|dbl|sn|sk|sko):(pub|fc|prc|pro|dbl|sn|sk|sko):(easy|hard|sym):(fw|open)$ ]] \
      || { echo "--pairs: '$spec' is not ANCHOR:SITE:CLASS:ROUTERS" >&2; exit 2; }
  done
fi

lab_step "the lab: core, coordinator, ONE relay, seven sites of two hosts"
lab_nat_core
mesh_coordinator_start
mesh_relay_start ra
lab_core_host pub
lab_core_host pubx
lab_site_natbox fc eim eif --hosts 2 --udp-timeout 30
lab_site_kernel prc port-restricted --hosts 2
lab_site_kernel pro port-restricted --hosts 2
lab_site_double dbl --hosts 2
lab_site_natbox sn apdm apdf --hosts 2 --udp-timeout 30
lab_site_kernel sk symmetric --hosts 2
lab_site_kernel sko symmetric --hosts 2
for r in prcr pror dblr dblc skr skor; do lab_conntrack_udp_timeout "$(lab_ns "$r")" 30; done
for rw in prcr:prcw skr:skw dblc:dblw dblr:dblhw; do   # as home routers do (see mesh.sh); pro, sko stay open
  mesh_router_firewall "$(lab_ns "${rw%%:*}")" "$(lab_name "${rw#*:}")"
done
declare -A ANCHOR_NS=([pub]=$(lab_host_ns pub)) TRIAL_NS=([pub]=$(lab_host_ns pubx))
for s in fc prc pro dbl sn sk sko; do ANCHOR_NS[$s]=$(lab_site_host "$s" 1); TRIAL_NS[$s]=$(lab_site_host "$s" 2); done

lab_step "anchors: one agent on host 1 of every site"
for s in pub fc prc pro dbl sn sk sko; do
  mesh_agent_start "$s" "${ANCHOR_NS[$s]}" --log-level "${PUNCH_LOG_LEVEL:-warn}"
  mesh_agent_up "$s"
done
mesh_wait_full 20

# trial N ANCHOR SITE CLASS — sets TRIAL_PING_S (from `knit up` returning to the first ping
# answered, any path: the first packet) and TRIAL_DIRECT_S (from the first ping sent, i.e. the
# first traffic, to the first answer while the path is direct), "-" when it never came. A sym
# trial stops at its first answer.
trial() {
  local n=$1 anchor=$2 site=$3 class=$4 label="t$1" t0 now first_ping="" direct="" deadline path
  mesh_agent_start "$label" "${TRIAL_NS[$site]}" --log-level "${PUNCH_LOG_LEVEL:-warn}" >/dev/null
  mesh_agent_up "$label" >/dev/null
  t0=$(mesh_now_us)   # `knit up` returned; the first ping leaves now
  deadline=$(( t0 + TRIAL_TIMEOUT * 1000000 ))
  while (( $(mesh_now_us) < deadline )); do
    if ip netns exec "${TRIAL_NS[$site]}" ping -c 1 -W 0.2 -n -q "${MESH_IP[$anchor]}" >/dev/null 2>&1; then
      now=$(mesh_now_us)
      [[ -n "$first_ping" ]] || first_ping=$(( now - t0 ))
      [[ "$class" == sym ]] && break
      path=$(mesh_path "$label" "$anchor")
      if [[ "$path" == direct ]]; then direct=$(( now - t0 )); break; fi
    fi
  done
  TRIAL_PING_S=- TRIAL_DIRECT_S=-
  [[ -n "$first_ping" ]] && TRIAL_PING_S=$(awk -v us="$first_ping" 'BEGIN { printf "%.2f", us / 1e6 }')
  [[ -n "$direct" ]] && TRIAL_DIRECT_S=$(awk -v us="$direct" 'BEGIN { printf "%.2f", us / 1e6 }')
  TRIAL_PATH=$(mesh_path "$label" "$anchor")
  if [[ -n "${PUNCH_CONNTRACK:-}" ]]; then   # debugging: UDP conntrack of these routers at the end
    local r
    for r in $PUNCH_CONNTRACK; do
      ip netns exec "$(lab_ns "$r")" cat /proc/net/nf_conntrack 2>/dev/null | grep udp >"$LAB_DIR/ct-$label-$r.txt" || true
    done
  fi
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
printf '%-3s %-5s %-5s %-32s %-38s %9s %10s %s\n' "#" class fw "first agent (up, anchor)" "second agent (new)" "1st ping" "to direct" "path at end"
declare -A FIRST=() DIRECT=()   # "class routers" -> space-separated times
n=0
for ((round = 1; round <= ROUNDS; round++)); do
  for spec in "${PAIRS[@]}"; do
    IFS=: read -r anchor site class routers <<<"$spec"
    n=$((n + 1))
    trial "$n" "$anchor" "$site" "$class"
    printf '%-3s %-5s %-5s %-32s %-38s %9s %10s %s\n' "$n" "$class" "$routers" "$anchor: ${KIND[$anchor]}" \
      "t$n: ${KIND[$site]} (host 2)" "$(unit "$TRIAL_PING_S")" "$(unit "$TRIAL_DIRECT_S")" "$TRIAL_PATH"
    FIRST["$class $routers"]+="$TRIAL_PING_S "
    [[ "$class" == sym ]] || DIRECT["$class $routers"]+="$TRIAL_DIRECT_S "
  done
done

maximum() {
  sed 's/^-$/1e9/' | sort -g | tail -n 1 | awk -v lim="$TRIAL_TIMEOUT" '{ if ($1 >= 1e8) print ">" lim; else printf "%.2f\n", $1 }'
}
count_ok() { local c=0 v; for v in "$@"; do [[ "$v" != - ]] && c=$((c + 1)); done; echo "$c"; }
lab_step "results (one relay): per pair class and router kind, medians and maxima in seconds"
printf '%-6s %-5s %-28s %-28s %s\n' class fw "knit up -> first packet" "first traffic -> direct" "went direct"
for key in "easy fw" "easy open" "hard fw" "hard open" "sym fw" "sym open"; do
  [[ -n "${FIRST[$key]:-}" ]] || continue
  read -ra f <<<"${FIRST[$key]}"
  fm=$(printf '%s\n' "${f[@]}" | median) fx=$(printf '%s\n' "${f[@]}" | maximum)
  if [[ -n "${DIRECT[$key]:-}" ]]; then
    read -ra d <<<"${DIRECT[$key]}"
    dm=$(printf '%s\n' "${d[@]}" | median) dx=$(printf '%s\n' "${d[@]}" | maximum)
    dtext="median $dm, max $dx" ok="$(count_ok "${d[@]}") of ${#d[@]}"
  else
    dtext="- (relay pairs)" ok="-"
  fi
  printf '%-6s %-5s %-28s %-28s %s\n' ${key} "median $fm, max $fx" "$dtext" "$ok"
done
echo "targets: first packet < 1 s; easy pairs direct <= 1 s; easy <-> symmetric median <= 10 s, max <= 30 s"
