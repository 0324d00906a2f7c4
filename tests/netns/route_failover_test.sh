#!/usr/bin/env bash
# Route failover: two subnet routers advertise one LAN; two peers that accept routes ping a LAN
# host without pause, one over direct paths, one whose site blocks UDP (relay only). The router
# in use silently goes away — first its knitd is stopped (SIGSTOP: its coordinator and relay
# sessions stay open, so the coordinator still lists it online for 45 s), later the other
# router's underlay link is cut — and each time both peers must move the prefix to the other
# router within 10 s (agent/carrier_health.hpp: no answer for 4 s, on any path), measured from
# the moment of the failure to the first echo reply after it. In between, the stopped router
# comes back and the peers stay where they are (no move back, no flapping).
#
#   [kn-coord-SFX] knit-coordinator      [kn-ra-SFX] knit-relay "ra"
#          \                                 /
#           +--------------- [kn-core-SFX] "the internet" ---------------+
#           |                      |                        |              |
#   [kn-r1-SFX] knitd "r1"   [kn-r2-SFX] knitd "r2"   [kn-pd-SFX]      [kn-ur-SFX] site "u":
#   192.0.2.x, ip_forward    192.0.2.y, ip_forward    knitd "pd"       masquerade, UDP dropped
#   10.77.0.1/24             10.77.0.3/24             (direct)          |
#           \                      /                               [kn-uh1-SFX] knitd "pr"
#            +--- [kn-lan-SFX] bridge, 10.77.0.2/24 ---+                (relay only)
#                 a LAN host with no route to the mesh
#
# Both routers translate (--snat-routes, the default), so the LAN host answers whichever router
# sent the packet. Connections translated by the failed router cannot survive the move (the LAN
# host sees a new source); new ones go through the other router, which is checked with TCP.
# Run time: about 30 s.
set -euo pipefail
source "$(dirname "$0")/../lab/lib.sh"
source "$(dirname "$0")/../lab/nat.sh"
source "$(dirname "$0")/../lab/mesh.sh"
lab_init ping nc jq
lab_require_impl knitd

LAN_PREFIX=10.77.0.0/24
LAN_HOST=10.77.0.2
LIMIT_S=10

lab_nat_core
mesh_coordinator_start
mesh_relay_start ra
lab_core_host r1
lab_core_host r2
lab_core_host pd
lab_site_udp_blocked u
lab_ns_add lan
LAN=$(lab_ns lan)
ip -n "$LAN" link add lanbr type bridge || lab_fail "cannot create the LAN bridge"
ip -n "$LAN" link set lanbr up
lab_addr "$LAN" lanbr "$LAN_HOST/24"
n=1
for r in r1 r2; do
  lab_veth "$(lab_host_ns $r)" "$(lab_name "${r}l")" "10.77.0.$n/24" "$LAN" "$(lab_name "l$r")" -
  ip -n "$LAN" link set "$(lab_name "l$r")" master lanbr
  lab_sysctl "$(lab_host_ns $r)" net.ipv4.ip_forward 1
  n=3
done

for a in r1 r2 pd; do mesh_agent_start "$a" "$(lab_host_ns $a)"; done
mesh_agent_start pr "$(lab_site_host u)"
for a in r1 r2; do
  out=$(mesh_knit "$a" up --token "$(mesh_token)" --hostname "$a" --advertise-routes "$LAN_PREFIX" 2>&1) \
    || lab_fail "knit up --advertise-routes on $a failed: $out"
  MESH_IP[$a]=$(mesh_self "$a" ipv4)
  mesh_coordinator routes approve "$a" "$LAN_PREFIX" >/dev/null || lab_fail "routes approve $a failed"
done
mesh_agent_up pd
mesh_agent_up pr
mesh_wait_full 20

lab_step "both routers' route reaches both peers; they accept it and pick one carrier"
both_routes() {
  local p=$1
  mesh_status "$p" | jq -e --arg pfx "$LAN_PREFIX" \
    '[.peers[] | select(.routes == [$pfx]) | .name] | sort == ["r1", "r2"]' >/dev/null
}
for p in pd pr; do lab_wait_for 5 "$p to see both routers' route" both_routes "$p"; done
# Accepted only now, so both peers choose by the same rule (the lower node key): no history yet.
for p in pd pr; do mesh_knit "$p" set --accept-routes=true >/dev/null || lab_fail "accept-routes on $p failed"; done
via() { mesh_status "$1" | jq -r --arg pfx "$LAN_PREFIX" '.self.routes.carriers[] | select(.prefix == $pfx) | .via'; }
state_of() {
  mesh_status "$1" | jq -r --arg pfx "$LAN_PREFIX" --arg r "$2" \
    '.self.routes.carriers[] | select(.prefix == $pfx) | .candidates[] | select(.name == $r) | "\(.state) \(.reason)"'
}
has_via() { [[ "$(via "$1")" == r? ]]; }
for p in pd pr; do lab_wait_for 5 "$p to choose a carrier" has_via "$p"; done
FIRST=$(via pd)
[[ "$(via pr)" == "$FIRST" ]] || lab_fail "the peers chose different carriers: pd $(via pd), pr $(via pr)"
SECOND=$([[ $FIRST == r1 ]] && echo r2 || echo r1)
lab_log "$(mesh_knit pd status | grep '^# route ' || true)"
mesh_wait_path 15 pd "$FIRST" direct
mesh_wait_path 15 pd "$SECOND" direct
mesh_wait_path 15 pr "$FIRST" relay
lab_pass "both peers carry $LAN_PREFIX through $FIRST (standby: $SECOND); pd direct, pr through the relay"

lab_step "ongoing pings from both peers to the LAN host"
lab_bg lanlisten "$LAN" timeout 120 nc -n -k -l -p 5001
for p in pd pr; do
  lab_bg "ping-$p" "${MESH_AGENT_NS[$p]}" timeout 120 ping -D -n -i 0.2 -W 1 "$LAN_HOST"
done
answered_since() {  # PEER T_S: a reply logged later than unix time T_S
  awk -v t="$2" -F'[][]' '/bytes from/ && $2 + 0 > t { found = 1; exit } END { exit !found }' "$LAB_DIR/logs/ping-$1.log"
}
for p in pd pr; do lab_wait_for 10 "echo replies on $p" answered_since "$p" 0; done
lab_pass "both peers get echo replies through $FIRST"

# failover LABEL ROUTER_GONE ROUTER_NEXT — waits for both peers to carry the prefix through
# ROUTER_NEXT and get replies again; prints the switchover time per peer (failure -> first
# echo reply more than 0.3 s after it: any later reply went through the other router).
failover() {
  local label=$1 gone=$2 next=$3 t0_s=$4 p ms first
  moved() { [[ "$(via "$1")" == "$next" ]] && answered_since "$1" "$(awk -v t="$t0_s" 'BEGIN { printf "%.6f", t + 0.3 }')"; }
  for p in pd pr; do
    lab_poll $(( LIMIT_S + 2 )) moved "$p" \
      || lab_fail "$label: $p still has no replies through $next (via $(via "$p"); $gone: $(state_of "$p" "$gone"))"
    first=$(awk -v t="$t0_s" -F'[][]' '/bytes from/ && $2 + 0 > t + 0.3 { print $2; exit }' "$LAB_DIR/logs/ping-$p.log")
    ms=$(awk -v a="$first" -v b="$t0_s" 'BEGIN { printf "%d", (a - b) * 1000 }')
    lab_log "$label: $p ($([[ $p == pd ]] && echo direct || echo relayed)) switched to $next after ${ms} ms"
    (( ms <= LIMIT_S * 1000 )) || lab_fail "$label: $p took ${ms} ms (limit ${LIMIT_S} s)"
    SWITCH_MS[$p]=$ms
  done
}
declare -A SWITCH_MS=()

lab_step "SIGSTOP $FIRST's knitd: both peers move to $SECOND within ${LIMIT_S} s"
FIRST_PID=$(lab_wg_pid "${MESH_AGENT_IF[$FIRST]}")
T0=$(date +%s.%N)
kill -STOP "$FIRST_PID"
failover "stopped $FIRST" "$FIRST" "$SECOND" "$T0"
reason=$(state_of pd "$FIRST")
[[ "$reason" == "down no answer for "* || "$reason" == "down never answered"* ]] \
  || lab_fail "pd's status does not say why $FIRST is not used: '$reason'"
mesh_status pd | jq -e --arg r "$FIRST" '.peers[] | select(.name == $r) | .online' >/dev/null \
  || lab_fail "the coordinator already lists $FIRST offline: this did not test silent failure"
ip netns exec "${MESH_AGENT_NS[pd]}" timeout 5 nc -n -z -w 3 "$LAN_HOST" 5001 || lab_fail "pd cannot open a new TCP connection through $SECOND"
lab_log "$(mesh_knit pd status | grep '^# route ')"
lab_pass "stopped router: pd ${SWITCH_MS[pd]} ms (direct), pr ${SWITCH_MS[pr]} ms (relayed); $FIRST '$reason'; new TCP works"

lab_step "SIGCONT $FIRST: it is up again, and the peers stay on $SECOND"
kill -CONT "$FIRST_PID"
standby() { [[ "$(state_of "$1" "$FIRST")" == "standby " ]]; }
for p in pd pr; do lab_wait_for 8 "$p to see $FIRST up again" standby "$p"; done
for p in pd pr; do [[ "$(via "$p")" == "$SECOND" ]] || lab_fail "$p moved back to $(via "$p")"; done
lab_pass "$FIRST is standby on both peers; the prefix stays on $SECOND"

lab_step "cut $SECOND's underlay link: both peers move back to $FIRST within ${LIMIT_S} s"
T1=$(date +%s.%N)
ip -n "$(lab_host_ns "$SECOND")" link set "$(lab_name "${SECOND}0")" down
failover "cut $SECOND" "$SECOND" "$FIRST" "$T1"
lab_log "$(mesh_knit pr status | grep '^# route ')"
lab_pass "cut link: pd ${SWITCH_MS[pd]} ms (direct), pr ${SWITCH_MS[pr]} ms (relayed)"
ip -n "$(lab_host_ns "$SECOND")" link set "$(lab_name "${SECOND}0")" up
