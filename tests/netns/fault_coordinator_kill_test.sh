#!/usr/bin/env bash
# Fault: the coordinator is killed with -9 while ten agents are joining. Every `knit up` must
# either complete or fail with a clear message (one line, saying what went wrong); after the
# coordinator restarts on the same state, the agents that failed join with the same command, and
# the mesh holds no half-joined node (exactly the ten agents, each knowing the address the
# coordinator gave it) and no duplicate address.
#
#   [kn-coord-SFX] knit-coordinator 192.0.2.1:7443 (killed -9, then restarted on its state)
#          |
#   [kn-core-SFX] ---- [kn-j0-SFX] knitd j0 192.0.2.17 ... [kn-j9-SFX] knitd j9 192.0.2.161
#
# Prints when the kill fell (how many nodes the store held), each join's outcome and how long the
# mesh took to be whole again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/mesh.sh"
lab_init jq tc

N=10
lab_step "topology: a coordinator and $N agents on the core"
lab_nat_core
mesh_coordinator_start
TOKEN=$(mesh_token)
for ((i = 0; i < N; i++)); do
  lab_core_host "j$i"
  mesh_agent_start "j$i" "$(lab_host_ns "j$i")"
done

nodes() { mesh_coordinator nodes list --json 2>/dev/null | jq length 2>/dev/null || echo 0; }
lab_step "$N agents run \`knit up\` at once; the coordinator is killed -9 once the first has joined"
# A slow coordinator link (150 ms with netem; where the kernel has none, 256 kbit/s with tbf), so
# the joins (TCP, Noise, register, first delta) overlap and the kill lands in several.
ip netns exec "$MESH_COORD_NS" tc qdisc add dev "$(lab_name coord0)" root netem delay 150ms 2>/dev/null \
  || ip netns exec "$MESH_COORD_NS" tc qdisc add dev "$(lab_name coord0)" root tbf rate 256kbit burst 4kb latency 2s \
  || lab_fail "cannot slow the coordinator's link (tc netem or tbf)"
declare -A UP_PID=()
for ((i = 0; i < N; i++)); do
  mesh_knit "j$i" up --token "$TOKEN" --hostname "j$i" >"$LAB_DIR/logs/up-j$i.out" 2>&1 &
  UP_PID[j$i]=$!
done
first_joined() { (( $(nodes) >= 1 )); }
lab_poll 30 first_joined || true
kill -KILL "$MESH_COORD_PID"
killed_us=$(mesh_now_us)
wait "$MESH_COORD_PID" 2>/dev/null || true
MESH_COORD_PID=""
ip netns exec "$MESH_COORD_NS" tc qdisc del dev "$(lab_name coord0)" root
lab_log "coordinator killed -9 with $(nodes) node(s) in its store"

# Every `knit up` ends (within 60 s) in success or in one clear line.
declare -A OUTCOME=()
joined=0 refused=0
for ((i = 0; i < N; i++)); do
  lab_bg_wait "${UP_PID[j$i]}" 60
  out=$(tr '\n' ' ' <"$LAB_DIR/logs/up-j$i.out")
  if (( LAB_BG_RC == 0 )); then
    OUTCOME[j$i]=joined joined=$((joined + 1))
  elif (( LAB_BG_RC == 124 )); then
    lab_fail "knit up on j$i was still waiting 60 s after the coordinator died: $out"
  else
    lines=$(grep -c . "$LAB_DIR/logs/up-j$i.out" || true)
    (( lines >= 1 && lines <= 2 )) || lab_fail "knit up on j$i failed with $lines lines instead of one clear message: $out"
    grep -qiE 'coordinator|connect|reach|try again|retry' "$LAB_DIR/logs/up-j$i.out" \
      || lab_fail "knit up on j$i failed without saying what went wrong: $out"
    OUTCOME[j$i]=failed refused=$((refused + 1))
  fi
  lab_log "j$i: ${OUTCOME[j$i]} (status $LAB_BG_RC): $out"
done
lab_pass "$joined joined, $refused failed with a clear message"

lab_step "coordinator restarted on the same state; the failed agents run \`knit up\` again"
mesh_coordinator_start
for ((i = 0; i < N; i++)); do
  [[ "${OUTCOME[j$i]}" == joined ]] && continue
  out=$(mesh_knit "j$i" up --token "$TOKEN" --hostname "j$i" 2>&1) || lab_fail "second knit up on j$i failed: $out"
done
for ((i = 0; i < N; i++)); do
  MESH_IP[j$i]=$(mesh_self "j$i" ipv4)
done
mesh_wait_full 60
whole_ms=$(( ($(mesh_now_us) - killed_us) / 1000 ))

lab_step "the store: exactly the $N agents, no duplicate address, each agent's address its own"
list=$(mesh_coordinator nodes list --json)
count=$(jq length <<<"$list")
(( count == N )) || lab_fail "the coordinator lists $count nodes, not $N (a half-joined node?): $(jq -c '[.[] | {name, ipv4}]' <<<"$list")"
dup4=$(jq -r '[.[] | .ipv4] | group_by(.) | map(select(length > 1)) | flatten | join(" ")' <<<"$list")
dup6=$(jq -r '[.[] | .ipv6] | group_by(.) | map(select(length > 1)) | flatten | join(" ")' <<<"$list")
[[ -z "$dup4$dup6" ]] || lab_fail "duplicate addresses in the store: $dup4 $dup6"
for ((i = 0; i < N; i++)); do
  key=$(mesh_self "j$i" node_key)
  want=$(jq -r --arg k "$key" 'first(.[] | select(.node_key == $k) | .ipv4) // "none"' <<<"$list")
  [[ "$want" == "${MESH_IP[j$i]}" ]] || lab_fail "j$i has ${MESH_IP[j$i]}, the store says $want for its key"
done
lab_pass "$N nodes, $N distinct IPv4 and IPv6 addresses, each agent's address matches the store; mesh whole ${whole_ms} ms after the kill"
