#!/usr/bin/env bash
# Subnet router: a peer behind a NAT reaches a host on a mesh node's LAN through the mesh, once
# an admin approves the route the node advertises; rejecting it takes the route away.
#
#   [kn-coord-SFX] knit-coordinator 192.0.2.1:7443
#          |
#   [kn-core-SFX] "the internet" ------------------------ [kn-pr-SFX] site "p", kernel NAT
#          |                                                    | 10.x.0.0/24
#   [kn-rtr-SFX] knitd "rtr" 192.0.2.17 (ip_forward on)   [kn-ph1-SFX] knitd "peer"
#          | 10.77.0.1/24                                  (`knit set --accept-routes=true`)
#   [kn-lan-SFX] 10.77.0.2: a LAN host that is no mesh member; it routes the mesh prefix back
#                through rtr (knitd does not translate yet: `--snat-routes=false` is the only mode)
#
# Checks:
#   bad advertisements (the mesh prefix, loopback, link-local, not a CIDR) are refused with one
#   line and exit 1; the advertised route is pending in `routes list --json` and absent from the
#   peer's map, allowed IPs and routing table; `routes approve` makes it appear on the peer
#   within 2 s (status --json: peers[].routes, routes_accepted; `ip route` through its TUN);
#   the peer pings the LAN host, sends it 20 MiB over TCP (sha256) and exchanges UDP both ways;
#   the LAN host sees the peer's mesh address as the source (no translation); `routes reject`
#   removes the route from the peer within 2 s and the LAN host is unreachable again.
# Run time: about 15 s.
set -euo pipefail
source "$(dirname "$0")/../lab/lib.sh"
source "$(dirname "$0")/../lab/nat.sh"
source "$(dirname "$0")/../lab/mesh.sh"
lab_init ping nc jq
lab_require_impl knitd

lab_nat_core
mesh_coordinator_start
lab_core_host rtr
RTR=$(lab_host_ns rtr)
lab_ns_add lan
LAN=$(lab_ns lan)
lab_veth "$RTR" "$(lab_name rl)" 10.77.0.1/24 "$LAN" "$(lab_name ll)" 10.77.0.2/24
lab_sysctl "$RTR" net.ipv4.ip_forward 1
lab_site_kernel p port-restricted
PEER_NS=$(lab_site_host p)

mesh_agent_start rtr "$RTR"
mesh_agent_start peer "$PEER_NS"
mesh_agent_up peer
MESH_PREFIX=100.64.0.0/10  # the coordinator's default
lab_route "$LAN" "$MESH_PREFIX" 10.77.0.1

lab_step "rtr joins advertising 10.77.0.0/24: pending, not in the peer's map"
out=$(mesh_knit rtr up --token "$(mesh_token)" --hostname rtr --advertise-routes 10.77.0.0/24 2>&1) \
  || lab_fail "knit up --advertise-routes on rtr failed: $out"
MESH_IP[rtr]=$(mesh_self rtr ipv4)
mesh_knit peer set --accept-routes=true >/dev/null || lab_fail "knit set --accept-routes=true failed"
mesh_wait_full 20
pending() { mesh_coordinator routes list --json | jq -e '.[] | select(.node == "rtr") | .pending == ["10.77.0.0/24"]' >/dev/null; }
lab_wait_for 5 "the coordinator to record rtr's advertisement" pending
[[ "$(mesh_peer peer rtr routes)" == null ]] || lab_fail "an unapproved route reached the peer: $(mesh_peer peer rtr routes)"
ip -n "$PEER_NS" route show 10.77.0.0/24 | grep -q . && lab_fail "the peer routes 10.77.0.0/24 before approval"
ip netns exec "$PEER_NS" ping -c 1 -W 1 -n 10.77.0.2 >/dev/null 2>&1 && lab_fail "the LAN host answered before approval"
lab_pass "advertised and pending; the peer has no route to the LAN"

lab_step "bad advertisements are refused with one line and exit 1, changing nothing"
for bad in 100.64.0.0/16 100.0.0.0/8 127.0.0.0/8 169.254.0.0/16 fe80::/64 10.77.0.1/24 10.77.0.1 banana; do
  if out=$(mesh_knit rtr set --advertise-routes "$bad" 2>&1); then
    lab_fail "knit set --advertise-routes $bad was accepted: $out"
  fi
  [[ $(printf '%s\n' "$out" | wc -l) == 1 ]] || lab_fail "refusing $bad took more than one line: $out"
  lab_log "refused $bad: $out"
done
mesh_status rtr | jq -e '.self.routes.advertised == ["10.77.0.0/24"] and .self.routes.accept == false' >/dev/null \
  || lab_fail "rtr's route settings changed: $(mesh_status rtr | jq -c .self.routes)"
if out=$(mesh_coordinator routes approve rtr 10.78.0.0/24 2>&1); then lab_fail "approving a route rtr does not advertise worked"; fi
if out=$(mesh_coordinator routes approve nobody 10.77.0.0/24 2>&1); then lab_fail "approving for an unknown node worked"; fi
if out=$(mesh_coordinator routes approve rtr 10.77.0.0/33 2>&1); then lab_fail "approving an invalid CIDR worked"; fi
lab_pass "the mesh prefix, loopback, link-local, host bits, an address and a word are refused; admin errors exit 1"

lab_step "approve: the route reaches the peer within 2 s"
T0=$(mesh_now_us)
mesh_coordinator routes approve rtr 10.77.0.0/24 >/dev/null || lab_fail "routes approve failed"
carried() { mesh_status peer | jq -e '.peers[] | select(.name == "rtr") | .routes == ["10.77.0.0/24"] and .routes_accepted' >/dev/null \
  && ip -n "$PEER_NS" route show 10.77.0.0/24 | grep -q "dev ${MESH_AGENT_IF[peer]}"; }
lab_poll 2 carried || lab_fail "the approved route is not on the peer after 2 s: $(mesh_status peer | jq -c '.peers[] | {name, routes, routes_accepted}')"
lab_pass "approved route on the peer after $(( ($(mesh_now_us) - T0) / 1000 )) ms"
mesh_knit peer status | grep -q "routes 10.77.0.0/24" || lab_fail "knit status on the peer does not show rtr's route: $(mesh_knit peer status)"
lab_pass "knit status shows which peer carries 10.77.0.0/24"

lab_step "the peer reaches the LAN host: ping, 20 MiB TCP, UDP both ways"
lab_ping "$PEER_NS" 10.77.0.2 10
F=$(lab_data_file 20)
lab_tcp_start lan20 "$PEER_NS" "$LAN" 10.77.0.2 5001 "$F"
lab_tcp_finish lan20 120
ROUTED_MBPS=$LAB_TCP_MBPS
lab_udp_open lanu "$LAN" -l -p 5353
lab_udp_open peeru "$PEER_NS" 10.77.0.2 5353
lab_udp_send peeru hello-lan
lab_udp_wait lanu hello-lan 5 || lab_fail "the LAN host got no UDP datagram from the peer"
lab_udp_send lanu hello-peer
lab_udp_wait peeru hello-peer 5 || lab_fail "the peer got no UDP answer from the LAN host"
lab_pass "UDP both ways between the peer and the LAN host"
# The source the LAN host saw: the peer's mesh address (the router forwards, no translation).
: >"$LAB_DIR/logs/lan-src.log"
lab_bg lan-src "$LAN" timeout 20 sh -c 'exec nc -v -n -l -p 5003 </dev/null 2>"$1"' nc "$LAB_DIR/logs/lan-src.log"
lab_wait_for 10 "a listener on 10.77.0.2:5003" lab__listening "$LAN" 5003
ip netns exec "$PEER_NS" timeout 5 nc -n -z -w 3 10.77.0.2 5003 || lab_fail "the peer cannot connect to the LAN host's port 5003"
lab_wait_for 5 "the LAN host to log the connection" grep -q "Connection received" "$LAB_DIR/logs/lan-src.log"
grep -q "Connection received on $(mesh_ip peer) " "$LAB_DIR/logs/lan-src.log" \
  || lab_fail "the LAN host did not see the peer's mesh address: $(cat "$LAB_DIR/logs/lan-src.log")"
lab_pass "the LAN host saw $(mesh_ip peer), the peer's mesh address, as the source"

lab_step "a direct mesh transfer for comparison"
lab_tcp_start mesh20 "$PEER_NS" "$RTR" "$(mesh_ip rtr)" 5002 "$F"
lab_tcp_finish mesh20 120
lab_log "throughput: through the router ${ROUTED_MBPS} Mbit/s, to the router's mesh address ${LAB_TCP_MBPS} Mbit/s"

lab_step "reject: the route leaves the peer within 2 s"
T0=$(mesh_now_us)
mesh_coordinator routes reject rtr 10.77.0.0/24 >/dev/null || lab_fail "routes reject failed"
gone() { ! ip -n "$PEER_NS" route show 10.77.0.0/24 | grep -q . && [[ "$(mesh_peer peer rtr routes)" == null ]]; }
lab_poll 2 gone || lab_fail "the rejected route is still on the peer after 2 s"
lab_pass "route removed from the peer after $(( ($(mesh_now_us) - T0) / 1000 )) ms"
ip netns exec "$PEER_NS" ping -c 1 -W 1 -n 10.77.0.2 >/dev/null 2>&1 && lab_fail "the LAN host still answers after the rejection"
lab_pass "the LAN host is unreachable from the peer again"
