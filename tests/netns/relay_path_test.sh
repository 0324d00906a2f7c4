#!/usr/bin/env bash
# Direct paths, the relay fallback and relay failover, end to end: a coordinator, two relays
# (each answering STUN) and two agents on a routed core.
#
#                               [kn-core-SFX] router (nft: can drop UDP between the agents)
#        10.201.100.1 /   10.201.101.1|  10.201.102.1|      \10.201.1.1      \10.201.2.1
#   10.201.100.2 [coord]   [relay1] .101.2   [relay2] .102.2   [a1] 10.201.1.2   [a2] 10.201.2.2
#   knit-coordinator        knit-relay r1     knit-relay r2     knitd             knitd
#
# Checks: the relays join with a relay token and appear in `relays list`; agents find a direct
# path (status path "direct", an RTT); a TCP transfer inside the tunnel survives direct ->
# relay (UDP between the agents dropped) -> direct; a capture at the relay never shows the
# inner plaintext; when the home relay is killed the agents re-home to the other relay and
# traffic resumes within 10 s; garbage and half-open connections at the relay port change nothing.
set -euo pipefail
source "$(dirname "$0")/../lab/lib.sh"
lab_init ping nc jq tcpdump iperf3
lab_require_impl knitd
for tool in knit knit-coordinator knit-relay; do
  [[ -x "$KNIT_BIN/$tool" ]] || lab_fail "$KNIT_BIN/$tool is missing: build the project first"
done

COORD_STATE="$LAB_DIR/coordinator"
COORD_ADDR=10.201.100.2:7443

lab_router_add core
CORE=$(lab_ns core)
lab_ns_add coord
lab_uplink "$(lab_ns coord)" "$(lab_name co)" 10.201.100.2/24 "$CORE" "$(lab_name rco)" 10.201.100.1/24
declare -A RELAY_NS RELAY_PID
for r in 1 2; do
  lab_ns_add "rel$r"
  RELAY_NS[$r]=$(lab_ns "rel$r")
  lab_uplink "${RELAY_NS[$r]}" "$(lab_name "rl$r")" "10.201.10$r.2/24" "$CORE" "$(lab_name "rr$r")" "10.201.10$r.1/24"
done
declare -A AGENT_NS AGENT_IF
for i in 1 2; do
  lab_ns_add "a$i"
  AGENT_NS[$i]=$(lab_ns "a$i")
  AGENT_IF[$i]=$(lab_name "k$i")
  lab_uplink "${AGENT_NS[$i]}" "$(lab_name "e$i")" "10.201.$i.2/24" "$CORE" "$(lab_name "r$i")" "10.201.$i.1/24"
done

coordinator() { "$KNIT_BIN/knit-coordinator" --state-dir "$COORD_STATE" "$@"; }
knit_in() {
  local i=$1; shift
  ip netns exec "${AGENT_NS[$i]}" "$KNIT_BIN/knit" --socket "$LAB_DIR/state/${AGENT_IF[$i]}/knitd.sock" "$@"
}
peer_field() {  # peer_field I JQ — agent I's only peer, through a jq filter
  knit_in "$1" status --json | jq -r ".peers[0] | $2"
}
path_is() { [[ "$(peer_field "$1" .path)" == "$2" ]]; }
start_relay() {  # start_relay R [TOKEN]
  local r=$1 token=${2:-}
  local args=(--name "r$r" --listen "10.201.10$r.2:8443" --stun "10.201.10$r.2:3478" --state-dir "$LAB_DIR/relay$r")
  [[ -n "$token" ]] && args+=(--token "$token")
  lab_bg "relay$r" "${RELAY_NS[$r]}" "$KNIT_BIN/knit-relay" "${args[@]}"
  RELAY_PID[$r]=$LAB_BG_LAST
  lab_wait_for 10 "relay r$r to listen" ip netns exec "${RELAY_NS[$r]}" nc -z -w 1 "10.201.10$r.2" 8443
}
block_udp() {
  lab_nft "$CORE" <<'EOF'
table inet kblock {
  chain drop_udp {
    type filter hook forward priority -10;
    ip saddr 10.201.1.0/24 ip daddr 10.201.2.0/24 meta l4proto udp drop
    ip saddr 10.201.2.0/24 ip daddr 10.201.1.0/24 meta l4proto udp drop
  }
}
EOF
}
unblock_udp() { ip netns exec "$CORE" nft delete table inet kblock; }

lab_step "coordinator and two relays join with relay tokens"
lab_bg coordinator "$(lab_ns coord)" "$KNIT_BIN/knit-coordinator" --state-dir "$COORD_STATE" serve --listen "$COORD_ADDR"
lab_wait_for 10 "the coordinator to listen" ip netns exec "$(lab_ns coord)" nc -z -w 1 10.201.100.2 7443
for r in 1 2; do
  RTOKEN=$(coordinator token create --relay --advertise "$COORD_ADDR" | tail -n 1)
  lab_secret_add token "$RTOKEN"
  start_relay "$r" "$RTOKEN"
done
relays_online() { [[ "$(coordinator relays list --json | jq '[.[] | select(.online == true)] | length')" == 2 ]]; }
lab_wait_for 10 "both relays to be online at the coordinator" relays_online
lab_pass "relays r1 and r2 registered: $(coordinator relays list --json | jq -c '[.[] | .name]')"

lab_step "two agents join and find a direct path"
TOKEN=$(coordinator token create --reusable --advertise "$COORD_ADDR" | tail -n 1)
lab_secret_add token "$TOKEN"
declare -A MESH_IP
for i in 1 2; do
  lab_wg_start knitd "${AGENT_NS[$i]}" "${AGENT_IF[$i]}"
  knit_in "$i" up --token "$TOKEN" --hostname "agent$i" || lab_fail "knit up on agent$i failed"
  MESH_IP[$i]=$(knit_in "$i" ip -4)
done
home_relay() { knit_in "$1" status --json | jq -r '.self.relay // empty'; }
# self.relay is set while the link to the home relay is up.
homes_up() { [[ -n "$(home_relay 1)" && -n "$(home_relay 2)" ]]; }
lab_wait_for 15 "both agents to be connected to a home relay" homes_up
lab_ping "${AGENT_NS[1]}" "${MESH_IP[2]}" 10
lab_wait_for 10 "agent1's path to agent2 to be direct" path_is 1 direct
lab_wait_for 10 "agent2's path to agent1 to be direct" path_is 2 direct
[[ "$(peer_field 1 .endpoint)" == 10.201.2.2:* ]] || lab_fail "direct endpoint is $(peer_field 1 .endpoint)"
[[ "$(peer_field 1 .rtt_ms)" != null ]] || lab_fail "a direct path has no RTT"
lab_pass "direct: $(peer_field 1 '"\(.endpoint) rtt \(.rtt_ms) ms"'); home relays $(knit_in 1 status --json | jq -r .self.relay), $(knit_in 2 status --json | jq -r .self.relay)"

lab_step "knit netcheck: UDP, the public address, NAT behaviour and both relays' latency"
NC=$(knit_in 1 netcheck --json) || lab_fail "knit netcheck failed"
echo "$NC" | jq -e '.udp == true and (.public_v4 | startswith("10.201.1.2:")) and .mapping_varies == false
    and (.relay_latency_ms | has("r1") and has("r2")) and (.home_relay | type == "string")' >/dev/null \
  || lab_fail "netcheck reports the wrong things: $NC"
knit_in 1 netcheck | grep -q "^Relays:.*(home)" || lab_fail "netcheck's text output lacks the relays: $(knit_in 1 netcheck)"
lab_pass "netcheck: $(echo "$NC" | jq -c '{udp, public_v4, mapping, mapping_varies, filtering, relay_latency_ms}')"

lab_step "a TCP transfer survives direct -> relay -> direct; the relay never sees plaintext"
HOME1=$(knit_in 1 status --json | jq -r .self.relay)
CAP_R=${HOME1#r}
lab_bg relaycap "${RELAY_NS[$CAP_R]}" timeout 120 tcpdump -n -U -s 0 -i "$(lab_name "rl$CAP_R")" -w "$LAB_DIR/relay.pcap" "tcp port 8443"
CAP_PID=$LAB_BG_LAST
lab_wait_for 10 "tcpdump at the relay" grep -q "listening on" "$LAB_DIR/logs/relaycap.log"
lab_bg iperf "${AGENT_NS[2]}" iperf3 -s -B "${MESH_IP[2]}" -p 5201 -1
sleep 0.5
# One TCP connection for 24 s at 8 Mbit/s: long enough to live through both switches.
ip netns exec "${AGENT_NS[1]}" iperf3 -c "${MESH_IP[2]}" -p 5201 -t 24 -b 8M --json > "$LAB_DIR/iperf.json" 2>&1 &
IPERF_PID=$!
sleep 3
block_udp
lab_wait_for 10 "agent1 to fall back to the relay" path_is 1 relay
lab_wait_for 10 "agent2 to fall back to the relay" path_is 2 relay
lab_ping "${AGENT_NS[1]}" "${MESH_IP[2]}" 5
# Plaintext inside the tunnel while it runs through the relay.
ip netns exec "${AGENT_NS[2]}" timeout 10 nc -l -p 5202 > "$LAB_DIR/marker.got" &
sleep 0.3
printf 'KNITPLAINTEXTMARKER-%.0s' {1..32} | ip netns exec "${AGENT_NS[1]}" nc -N -w 5 "${MESH_IP[2]}" 5202 || true
wait $! 2>/dev/null || true
grep -q KNITPLAINTEXTMARKER "$LAB_DIR/marker.got" || lab_fail "the marker did not cross the relay"
lab_pass "UDP blocked: both sides on relay $(peer_field 1 .relay), ping and TCP work"
sleep 3
unblock_udp
lab_wait_for 70 "agent1 to go direct again" path_is 1 direct
lab_pass "UDP back: direct again"
wait "$IPERF_PID" || lab_fail "the TCP transfer broke: $(tail -5 "$LAB_DIR/iperf.json")"
jq -e '.error == null and .end.sum_received.bytes > 10000000' "$LAB_DIR/iperf.json" >/dev/null \
  || lab_fail "the TCP transfer did not complete: $(jq -c '{error, received: .end.sum_received.bytes}' "$LAB_DIR/iperf.json")"
lab_pass "one TCP connection carried $(jq '.end.sum_received.bytes' "$LAB_DIR/iperf.json") bytes across direct -> relay -> direct"
sleep 0.5
kill "$CAP_PID" 2>/dev/null || true
sleep 0.5
PACKETS=$(tcpdump -r "$LAB_DIR/relay.pcap" 2>/dev/null | wc -l)
(( PACKETS > 50 )) || lab_fail "the capture at the relay shows only $PACKETS packets: nothing went through it"
if tcpdump -r "$LAB_DIR/relay.pcap" -A 2>/dev/null | grep -q KNITPLAINTEXTMARKER; then
  lab_fail "the relay saw the inner plaintext"
fi
lab_pass "the relay carried $PACKETS packets and never saw the plaintext"

lab_step "the home relay dies: agents re-home and traffic resumes within 10 s"
block_udp
lab_wait_for 10 "agent1 on the relay" path_is 1 relay
OTHER=2; [[ "$CAP_R" == 2 ]] && OTHER=1
kill "${RELAY_PID[$CAP_R]}"
started=$(date +%s%N)
rehomed() { [[ "$(knit_in 1 status --json | jq -r .self.relay)" == "r$OTHER" && "$(knit_in 2 status --json | jq -r .self.relay)" == "r$OTHER" ]]; }
lab_wait_for 10 "both agents to re-home to r$OTHER" rehomed
lab_wait_for 10 "a ping through r$OTHER" lab_ping "${AGENT_NS[1]}" "${MESH_IP[2]}" 1
elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
(( elapsed <= 10000 )) || lab_fail "traffic resumed only after $elapsed ms"
lab_pass "re-homed to r$OTHER; traffic resumed $elapsed ms after the relay died"
unblock_udp

lab_step "garbage and half-open connections at the relay port do not disturb forwarding"
# (A key that is not a mesh member is refused: relay_loopback_test and relay_server_core_test.)
block_udp
lab_wait_for 10 "agent1 on the relay again" path_is 1 relay
NOISE=()
for n in $(seq 1 10); do
  ip netns exec "${AGENT_NS[1]}" sh -c "sleep 6 | nc -w 7 10.201.10$OTHER.2 8443" >/dev/null 2>&1 &
  NOISE+=($!)
  ip netns exec "${AGENT_NS[2]}" sh -c "head -c 5000 /dev/urandom | nc -w 2 10.201.10$OTHER.2 8443" >/dev/null 2>&1 &
  NOISE+=($!)
done
sleep 1
lab_ping "${AGENT_NS[1]}" "${MESH_IP[2]}" 5
lab_ping "${AGENT_NS[2]}" "${MESH_IP[1]}" 5
path_is 1 relay || lab_fail "agent1 left the relay during the check"
wait "${NOISE[@]}" 2>/dev/null || true
unblock_udp
lab_pass "10 half-open and 10 garbage connections later, the relay still forwards"

lab_log "relay path test passed"
