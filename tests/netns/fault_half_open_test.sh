#!/usr/bin/env bash
# Fault: 10,000 half-open TCP connections (connected, then silent) against the relay and against
# the coordinator at once, from one attacker host, held for 25 s. Memory must stay bounded (RSS
# printed before, at the peak and after) and the legitimate agents must keep working: the two
# agents keep pinging each other through the relay, and a new agent joins through the
# coordinator, while the flood is on.
#
#   [kn-coord-SFX] coordinator 192.0.2.1:7443     [kn-ra-SFX] relay ra 192.0.2.17:443
#                        \                           /
#                         +------ [kn-core-SFX] ----+---- [kn-atk-SFX] conn_flood x 2 (.33)
#                        /        (UDP a1 <-> a2 dropped: a relay path)
#   [kn-a1-SFX] knitd a1 .49    [kn-a2-SFX] knitd a2 .65    [kn-a3-SFX] knitd a3 .81 (joins late)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/mesh.sh"
lab_init ping jq nft

COUNT=${LAB_FLOOD_COUNT:-10000}
HOLD=25
# Bounded: what the daemons may grow by while holding COUNT idle connections (16 KiB each).
MAX_GROWTH_KB=$(( COUNT * 16 ))
TOOLS=${KNIT_TEST_TOOLS:-$(dirname "$KNIT_BIN")/tests/tools}
[[ -x "$TOOLS/conn_flood" ]] || lab_fail "conn_flood not found in $TOOLS (build the tests)"

lab_step "topology: coordinator, relay, agents a1 and a2 on a relay path, an attacker"
lab_nat_core
mesh_coordinator_start
mesh_relay_start ra
lab_core_host atk
lab_core_host a1
lab_core_host a2
lab_core_host a3
lab_nft "$LAB_CORE" <<EOF
table inet kblock {
  chain forward {
    type filter hook forward priority -10;
    ip saddr $(lab_host_addr a1) ip daddr $(lab_host_addr a2) meta l4proto udp drop
    ip saddr $(lab_host_addr a2) ip daddr $(lab_host_addr a1) meta l4proto udp drop
  }
}
EOF
mesh_agent_start a1 "$(lab_host_ns a1)"
mesh_agent_start a2 "$(lab_host_ns a2)"
mesh_agent_up a1
mesh_agent_up a2
mesh_wait_full 20
mesh_wait_path 20 a1 a2 relay
mesh_ping a1 a2 10

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
RELAY_PID=${MESH_RELAY_PID[ra]} COORD_PID=$MESH_COORD_PID
relay0=$(rss_kb "$RELAY_PID") coord0=$(rss_kb "$COORD_PID")
lab_log "RSS before: relay $relay0 kB, coordinator $coord0 kB"

lab_step "$COUNT half-open connections to the relay and $COUNT to the coordinator, held ${HOLD} s"
ATK=$(lab_host_ns atk)
lab_bg flood-relay "$ATK" "$TOOLS/conn_flood" --connect "$(lab_host_addr ra):$MESH_RELAY_PORT" --count "$COUNT" --hold "$HOLD"
f1=$LAB_BG_LAST
lab_bg flood-coord "$ATK" "$TOOLS/conn_flood" --connect "${MESH_COORD_ADDR}" --count "$COUNT" --hold "$HOLD"
f2=$LAB_BG_LAST
flooding() { grep -q 'holding them' "$LAB_DIR/logs/flood-relay.log" && grep -q 'holding them' "$LAB_DIR/logs/flood-coord.log"; }
lab_wait_for 30 "both floods to be connected" flooding
grep -h 'holding them' "$LAB_DIR/logs/flood-relay.log" "$LAB_DIR/logs/flood-coord.log" | sed 's/^/    /'

lab_step "while the flood holds: a1 <-> a2 through the relay, a3 joins"
mesh_ping a1 a2 5
mesh_ping a2 a1 5
mesh_agent_start a3 "$(lab_host_ns a3)"
[[ -n "$MESH_TOKEN" ]] || MESH_TOKEN=$(mesh_token)
t0=$(mesh_now_us)
joined_a3() { mesh_knit a3 up --token "$MESH_TOKEN" --hostname a3 >"$LAB_DIR/state/a3-up.out" 2>&1; }
# The coordinator shares its handshake slots by source and makes room by closing the flooder's
# oldest (base/handshake_slots.hpp): the flood holds at most its share, a3 gets in at once.
joined_a3 || lab_fail "a3 could not join during the flood: $(tr '\n' ' ' <"$LAB_DIR/state/a3-up.out")"
join_ms=$(( ($(mesh_now_us) - t0) / 1000 ))
MESH_IP[a3]=$(mesh_self a3 ipv4)
mesh_wait_full 20
mesh_ping a3 a1 10
relay1=$(rss_kb "$RELAY_PID") coord1=$(rss_kb "$COORD_PID")
lab_pass "during the flood: a1 <-> a2 ping through the relay, a3 joined in ${join_ms} ms and reaches a1"
lab_log "RSS under the flood: relay $relay1 kB, coordinator $coord1 kB"

lab_bg_wait "$f1" $(( HOLD + 30 ))
lab_bg_wait "$f2" $(( HOLD + 30 ))
grep -h 'closed by the server' "$LAB_DIR/logs/flood-relay.log" "$LAB_DIR/logs/flood-coord.log" | sed 's/^/    /'
sleep 3
lab__alive "$RELAY_PID" || lab_fail "knit-relay died under the flood"
lab__alive "$COORD_PID" || lab_fail "knit-coordinator died under the flood"
relay2=$(rss_kb "$RELAY_PID") coord2=$(rss_kb "$COORD_PID")
lab_log "RSS after the flood: relay $relay2 kB, coordinator $coord2 kB"
printf '    %-12s %10s %10s %10s\n' "" "before" "flood" "after" "relay" "$relay0" "$relay1" "$relay2" "coordinator" "$coord0" "$coord1" "$coord2"
(( relay1 - relay0 <= MAX_GROWTH_KB && relay2 - relay0 <= MAX_GROWTH_KB )) \
  || lab_fail "knit-relay grew by $(( relay1 - relay0 )) kB under the flood (bound $MAX_GROWTH_KB kB)"
(( coord1 - coord0 <= MAX_GROWTH_KB && coord2 - coord0 <= MAX_GROWTH_KB )) \
  || lab_fail "knit-coordinator grew by $(( coord1 - coord0 )) kB under the flood (bound $MAX_GROWTH_KB kB)"
mesh_ping a1 a2 5
mesh_ping a3 a2 5
lab_pass "$COUNT + $COUNT half-open connections: memory bounded, the mesh kept working"
