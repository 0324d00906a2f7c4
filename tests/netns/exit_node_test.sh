#!/usr/bin/env bash
# Exit node, the using side: a peer behind a NAT sends its internet traffic through a mesh node
# it chose with `knit set --exit-node`, while its own tunnel, relay and coordinator connections
# stay on its underlay (marked sockets, policy routing), and its LAN stays reachable directly
# when --exit-node-allow-lan=true.
#
#   [kn-coord-SFX] knit-coordinator        [kn-xr-SFX] knit-relay "xr"
#          |                                     |
#   [kn-core-SFX] "the internet" (has no route to 198.51.100.0/24) -------- [kn-pr-SFX] site "p",
#          |                                                                 kernel NAT, LAN 10.x.0.0/24
#   [kn-exit-SFX] knitd "exit" 192.0.2.x (ip_forward on,                     |            |
#          |       `knit up --advertise-exit-node`, approved)          [kn-ph1-SFX]   [kn-ph2-SFX]
#          | 198.51.100.1/24, 2001:db8:100::1/64 (its WAN)             knitd "peer"   its LAN host
#   [kn-inet-SFX] 198.51.100.2, 2001:db8:100::2: the "internet host"   (strict rp_filter)
#
# The exit's default routes (IPv4 and IPv6) go through the internet host's link; the internet
# host has no route to the mesh (neither 100.64.0.0/10 nor the mesh's ULA): the exit's knitd
# translates peers' traffic to 198.51.100.1 (SNAT on 0.0.0.0/0) and 2001:db8:100::1 (::/0).
# Only the exit's uplink reaches the IPv6 address: the core and the peer's site have no IPv6.
#
# Checks:
#   choosing a node that is not an approved exit node (an unknown name, the peer itself, the exit
#   before approval) is refused with one line and exit 1; once approved, `knit set --exit-node
#   exit --exit-node-allow-lan=true` makes status say active; the peer's ping and TCP to the
#   internet host go through the exit (tcpdump on the exit's WAN side); so do its IPv6 ping
#   and a 4 MiB IPv6 TCP transfer (sha256 checked) to the IPv6-only internet address, seen on
#   the exit's WAN with the exit's IPv6 address as source, never the peer's ULA, and an ICMPv6
#   port unreachable from the internet host comes back translated; the peer's tunnel,
#   relay and coordinator sockets carry knitd's mark and stay established, and a rename at the
#   coordinator still arrives; allow-lan=true reaches the peer's LAN host directly (nothing on
#   the exit's TUN), allow-lan=false sends it through the exit; rejecting the exit route
#   withdraws the default route within 2 s and the peer falls back to its underlay;
#   `--exit-node=` and stopping knitd leave `ip rule`, `ip -6 rule`, every routing table and
#   the rp_filter sysctls exactly as before; a knitd killed with the exit in use leaves its
#   rules behind and the next knitd removes them (and restores rp_filter) at start; on the
#   exit, `--advertise-exit-node=false` leaves its rules, routes and reserved ports as before
#   knitd; a knitd killed while translating leaves its `ip rule` and `ip -6 rule` steering
#   behind, the next one removes it at start, and after it stops the exit's rules, routes (both
#   families) and reserved ports are as before knitd.
# Run time: about 15 s.
set -euo pipefail
source "$(dirname "$0")/../lab/lib.sh"
source "$(dirname "$0")/../lab/nat.sh"
source "$(dirname "$0")/../lab/mesh.sh"
lab_init ping nc jq tcpdump ss
lab_require_impl knitd

lab_nat_core
mesh_coordinator_start
mesh_relay_start xr
lab_core_host exit
EXIT_NS=$(lab_host_ns exit)
lab_sysctl "$EXIT_NS" net.ipv4.ip_forward 1
lab_ns_add inet
INET=$(lab_ns inet)
EXIT_WAN=$(lab_name xw)
lab_veth "$EXIT_NS" "$EXIT_WAN" 198.51.100.1/24 "$INET" "$(lab_name iw)" 198.51.100.2/24
lab_site_kernel p port-restricted --hosts 2
PEER_NS=$(lab_site_host p 1)
LAN_HOST=$(lab_site_addr p 2)
MESH_PREFIX=100.64.0.0/10
# The exit's internet is its default route, through the internet host's link (as a VPS's
# uplink is); the lab's own networks stay reachable through the core. The internet host has no
# route to the mesh: the exit translates peers' traffic to its own address (knitd's SNAT on
# 0.0.0.0/0, egress = the default route's source, 198.51.100.1).
CORE_GW=$(ip -n "$EXIT_NS" route show default | awk '{print $3; exit}')
lab_route "$EXIT_NS" 192.0.2.0/24 "$CORE_GW"
lab_route "$EXIT_NS" 203.0.113.0/24 "$CORE_GW"
lab_route "$EXIT_NS" default 198.51.100.2
# IPv6: the internet host's address, reachable only over the exit's uplink.
EXIT6=2001:db8:100::1
INET6=2001:db8:100::2
lab_sysctl "$EXIT_NS" net.ipv6.conf.all.forwarding 1
lab_addr "$EXIT_NS" "$EXIT_WAN" "$EXIT6/64"
lab_addr "$INET" "$(lab_name iw)" "$INET6/64"
ip -n "$EXIT_NS" -6 route replace default via "$INET6" || lab_fail "no IPv6 default route on the exit"
# What knitd on the exit must leave as it found it (its TUN's own routes aside).
exit_state() {
  ip -n "$EXIT_NS" rule
  ip -n "$EXIT_NS" -6 rule
  ip -n "$EXIT_NS" route show table all | grep -v -e "dev ${MESH_AGENT_IF[exit]:-knit-none} " -e ' linkdown' || true
  ip -n "$EXIT_NS" -6 route show table all | grep -v -e "dev ${MESH_AGENT_IF[exit]:-knit-none} " -e ' linkdown' -e '^multicast' || true
  ip netns exec "$EXIT_NS" sysctl net.ipv4.ip_local_reserved_ports net.ipv4.conf.all.rp_filter
}
EXIT_BEFORE_KNITD=$(exit_state)

# Strict reverse-path filtering on the peer: knitd must loosen it while the exit is in use (the
# underlay's replies would fail the reverse lookup) and put it back.
lab_sysctl "$PEER_NS" net.ipv4.conf.all.rp_filter 1
host_state() {
  {
    ip -n "$PEER_NS" rule show
    ip -n "$PEER_NS" -6 rule show
    ip -n "$PEER_NS" route show table all
    ip -n "$PEER_NS" -6 route show table all
    ip netns exec "$PEER_NS" sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.all.src_valid_mark
  } | grep -v ' proto kernel .*fe80::\|^multicast\|^local fe80::' | sort
}
BEFORE_KNITD=$(host_state)

mesh_agent_start exit "$EXIT_NS"
mesh_agent_start peer "$PEER_NS"
out=$(mesh_knit exit up --token "$(mesh_token)" --hostname exit --advertise-exit-node 2>&1) \
  || lab_fail "knit up --advertise-exit-node on exit failed: $out"
MESH_IP[exit]=$(mesh_self exit ipv4)
mesh_agent_up peer
mesh_wait_full 20
PEER_IF=${MESH_AGENT_IF[peer]}
EXIT_IF=${MESH_AGENT_IF[exit]}
BEFORE_EXIT=$(host_state)
ip netns exec "$PEER_NS" ping -c 1 -W 1 -n 198.51.100.2 >/dev/null 2>&1 && lab_fail "the internet host answered without an exit node"

lab_step "choosing what is not an approved exit node is refused with one line and exit 1"
for bad in nobody peer "$(mesh_ip peer)" exit; do
  if out=$(mesh_knit peer set --exit-node "$bad" 2>&1); then lab_fail "knit set --exit-node $bad was accepted: $out"; fi
  [[ $(printf '%s\n' "$out" | wc -l) == 1 ]] || lab_fail "refusing $bad took more than one line: $out"
  lab_log "refused $bad: $out"
done
mesh_status peer | jq -e '.self.exit_node == null' >/dev/null || lab_fail "a refused exit node was kept"
[[ "$(host_state)" == "$BEFORE_EXIT" ]] || lab_fail "a refused exit node changed the host"
lab_pass "unknown node, ourselves (name and IP), and an unapproved exit node are refused"

lab_step "approve the exit; the peer uses it (allow-lan) and says so"
mesh_coordinator routes approve exit exit >/dev/null || lab_fail "routes approve exit exit failed"
lab_poll 3 eval '[[ "$(mesh_peer peer exit routes)" != null ]]' || lab_fail "the exit route did not reach the peer"
mesh_knit peer set --exit-node exit --exit-node-allow-lan=true >/dev/null || lab_fail "knit set --exit-node exit failed"
active() { mesh_status peer | jq -e '.self.exit_node | .active and .name == "exit" and .allow_lan' >/dev/null; }
lab_poll 3 active || lab_fail "the exit node is not active: $(mesh_status peer | jq -c .self.exit_node)"
grep -q "# exit node: exit (${MESH_IP[exit]}), active" <<<"$(mesh_knit peer status)" || lab_fail "knit status does not show the exit: $(mesh_knit peer status)"
grep -q "not from all fwmark 0x4b6e0000/0xffff0000 lookup 5270" <<<"$(ip -n "$PEER_NS" rule show)" || lab_fail "no mark rule: $(ip -n "$PEER_NS" rule show)"
grep -q "dev $PEER_IF table 5270" <<<"$(ip -n "$PEER_NS" route get 198.51.100.2)" || lab_fail "198.51.100.2 is not routed into the TUN: $(ip -n "$PEER_NS" route get 198.51.100.2)"
grep -q "dev $PEER_IF table 5270" <<<"$(ip -n "$PEER_NS" -6 route get 2001:db8::1)" || lab_fail "IPv6 is not routed into the TUN: $(ip -n "$PEER_NS" -6 route get 2001:db8::1 2>&1)"
[[ "$(ip netns exec "$PEER_NS" sysctl -n net.ipv4.conf.all.rp_filter)" == 2 ]] || lab_fail "rp_filter was not loosened"
lab_pass "active; IPv4 and IPv6 default routes through $PEER_IF (table 5270), rp_filter loose"

lab_step "the peer's traffic to the internet host leaves through the exit"
lab_capture_start wan "$EXIT_NS" "$EXIT_WAN" "host 198.51.100.2 and (icmp or tcp port 5004)"
lab_ping "$PEER_NS" 198.51.100.2 5
: >"$LAB_DIR/logs/inet-src.log"
lab_bg inet-src "$INET" timeout 20 sh -c 'exec nc -v -n -l -p 5004 </dev/null 2>"$1"' nc "$LAB_DIR/logs/inet-src.log"
lab_wait_for 10 "a listener on 198.51.100.2:5004" lab__listening "$INET" 5004
ip netns exec "$PEER_NS" timeout 5 nc -n -z -w 3 198.51.100.2 5004 || lab_fail "the peer cannot connect to the internet host"
lab_wait_for 5 "the internet host to log the connection" grep -q "Connection received" "$LAB_DIR/logs/inet-src.log"
lab_capture_stop wan
grep -q "198.51.100.1 > 198.51.100.2: ICMP echo request" <<<"$(lab_capture_lines wan)" || lab_fail "no translated echo request from the peer on the exit's WAN: $(lab_capture_lines wan | head -5)"
grep -q "198.51.100.1\.61[0-9]* > 198.51.100.2\.5004" <<<"$(lab_capture_lines wan)" || lab_fail "no translated TCP from the peer on the exit's WAN: $(lab_capture_lines wan | head -5)"
grep -q "Connection received on 198.51.100.1 " "$LAB_DIR/logs/inet-src.log" || lab_fail "the internet host saw: $(cat "$LAB_DIR/logs/inet-src.log")"
! grep -q "$(mesh_ip peer)" <<<"$(lab_capture_lines wan)" || lab_fail "the peer's mesh address appeared on the exit's WAN: $(lab_capture_lines wan | grep "$(mesh_ip peer)" | head -3)"
lab_pass "ICMP and TCP from the peer crossed the exit's WAN as 198.51.100.1 ($(lab_capture_lines wan | wc -l) packets)"

lab_step "IPv6: the peer reaches an IPv6-only internet host through the exit, as the exit's address"
snat6() { mesh_knit exit nat --json | jq -e --arg a "$EXIT6" '.egress["::/0"] == $a' >/dev/null; }
lab_poll 3 snat6 || lab_fail "the exit does not translate ::/0 to $EXIT6: $(mesh_knit exit nat --json | jq -c 'del(.entries)')"
grep -q "exit node, .*snat on (IPv4 and IPv6, " <<<"$(mesh_knit exit status)" || lab_fail "knit status on the exit: $(mesh_knit exit status | grep routes)"
grep -q "^1:.*to $EXIT6 ipproto tcp dport 61000-61999 lookup 1802371155" <<<"$(ip -n "$EXIT_NS" -6 rule)" \
  && grep -q "^2:.*lookup local" <<<"$(ip -n "$EXIT_NS" -6 rule)" \
  || lab_fail "the exit's IPv6 steering rules: $(ip -n "$EXIT_NS" -6 rule)"
PEER_ULA=$(mesh_self peer ipv6)
[[ "$PEER_ULA" == *:* ]] || lab_fail "the peer has no mesh IPv6 address: $PEER_ULA"
lab_capture_start wan6 "$EXIT_NS" "$EXIT_WAN" "ip6 and host $INET6 and (icmp6 or tcp port 5006)"
lab_ping "$PEER_NS" "$INET6" 5
lab_tcp_start v6 "$PEER_NS" "$INET" "$INET6" 5006 "$(lab_data_file 4)"
lab_tcp_finish v6 30
lab_capture_stop wan6
grep -q "$EXIT6 > $INET6: ICMP6, echo request" <<<"$(lab_capture_lines wan6)" || lab_fail "no translated IPv6 echo request on the exit's WAN: $(lab_capture_lines wan6 | head -5)"
grep -q "$EXIT6\.61[0-9]* > $INET6\.5006: Flags \[S\]" <<<"$(lab_capture_lines wan6)" || lab_fail "no translated IPv6 SYN on the exit's WAN: $(lab_capture_lines wan6 | head -5)"
! grep -q "$PEER_ULA" <<<"$(lab_capture_lines wan6)" || lab_fail "the peer's ULA appeared on the exit's WAN: $(lab_capture_lines wan6 | grep "$PEER_ULA" | head -3)"
lab_pass "ping6 and TCP from the peer crossed the exit's WAN as $EXIT6 ($(lab_capture_lines wan6 | wc -l) packets, none with the peer's ULA)"
# A datagram to a closed port: the internet host's ICMPv6 port unreachable (to $EXIT6, read on
# the exit's raw ICMPv6 socket) comes back translated to the peer.
icmp_errors() { mesh_knit exit nat --json | jq '.counters.icmp_errors_translated'; }
ERRORS_BEFORE=$(icmp_errors)
ip netns exec "$PEER_NS" sh -c "echo knock | timeout 3 nc -6 -u -n -w 1 $INET6 9" >/dev/null 2>&1 || true
lab_poll 3 eval '(( $(icmp_errors) > ERRORS_BEFORE ))' || lab_fail "no ICMPv6 error translated back to the peer: $(mesh_knit exit nat --json | jq -c .counters)"
lab_pass "an ICMPv6 port unreachable came back translated"

lab_step "the peer keeps its tunnel, relay and coordinator on the underlay"
# (ss -e may complain that it finds no cgroup2 mount; the marks are printed all the same)
socks=$(ip netns exec "$PEER_NS" ss -Htne state established 2>/dev/null || true)
for dest in "${MESH_COORD_ADDR}" "${MESH_RELAY_ADDR[xr]}:$MESH_RELAY_PORT"; do
  grep -F " $dest " <<<"$socks" | grep -q "fwmark:0x4b6e0000" || lab_fail "no marked established connection to $dest: $socks"
done
grep -q "fwmark:0x4b6e0000" <<<"$(ip netns exec "$PEER_NS" ss -Hune 2>/dev/null || true)" || lab_fail "the tunnel's UDP socket is not marked"
mesh_coordinator nodes rename exit gw >/dev/null || lab_fail "nodes rename failed"
lab_poll 5 eval '[[ "$(mesh_status peer | jq -r ".self.exit_node.name")" == gw ]]' || lab_fail "the rename did not arrive: $(mesh_status peer | jq -c .self.exit_node)"
active_gw() { mesh_status peer | jq -e '.self.exit_node | .active and .name == "gw"' >/dev/null; }
active_gw || lab_fail "the exit is no longer active after the rename"
mesh_ping peer exit 5  # (the label; its name is gw now)
lab_pass "coordinator and relay connections marked and established; a rename arrived; the mesh answers"

lab_step "allow-lan=true reaches the LAN host directly, false through the exit"
lab_capture_start tun "$EXIT_NS" "$EXIT_IF" "host $LAN_HOST"
lab_ping "$PEER_NS" "$LAN_HOST" 5
sleep 0.3
n=$(lab_capture_lines tun | grep -c "ICMP echo request" || true)
(( n == 0 )) || lab_fail "allow-lan=true: $n echo requests to the LAN host went into the exit's tunnel"
mesh_knit peer set --exit-node-allow-lan=false >/dev/null || lab_fail "knit set --exit-node-allow-lan=false failed"
lab_poll 3 eval 'mesh_status peer | jq -e ".self.exit_node | .active and (.allow_lan | not)" >/dev/null' || lab_fail "allow-lan did not turn off"
ip netns exec "$PEER_NS" ping -c 2 -W 1 -n "$LAN_HOST" >/dev/null 2>&1 && lab_fail "the LAN host answered directly with allow-lan=false"
lab_capture_stop tun
# What the exit's knitd writes to its TUN: the peer's echo requests, translated to its own
# default-route address like the rest of the peer's traffic through the exit.
n=$(lab_capture_lines tun | grep -c "198.51.100.1 > $LAN_HOST: ICMP echo request" || true)
(( n >= 1 )) || lab_fail "allow-lan=false: no echo request to the LAN host on the exit's TUN"
mesh_ping peer exit 5  # (the label; its name is gw now)
lab_pass "allow-lan=true: direct; allow-lan=false: $n echo requests to $LAN_HOST went into the exit's tunnel"

lab_step "the exit route is rejected: the peer falls back within 2 s"
T0=$(mesh_now_us)
mesh_coordinator routes reject gw exit >/dev/null || lab_fail "routes reject failed"
fallen_back() { ! grep -q 5270 <<<"$(ip -n "$PEER_NS" rule show)" && mesh_status peer | jq -e '.self.exit_node | (.active | not) and .state == "not an exit node"' >/dev/null; }
lab_poll 2 fallen_back || lab_fail "the default route is still through the exit after 2 s: $(mesh_status peer | jq -c .self.exit_node)"
lab_pass "withdrawn after $(( ($(mesh_now_us) - T0) / 1000 )) ms"
lab_ping "$PEER_NS" "$LAN_HOST" 5
ip netns exec "$PEER_NS" ping -c 1 -W 1 -n 198.51.100.2 >/dev/null 2>&1 && lab_fail "the internet host still answers without the exit"
grep -q "# exit node: gw .*not an exit node: this host uses its own default route" <<<"$(mesh_knit peer status)" || lab_fail "status: $(mesh_knit peer status)"
mesh_coordinator routes approve gw exit >/dev/null || lab_fail "routes approve failed"
lab_poll 3 active_gw || lab_fail "the exit did not come back after approval"
lab_pass "the peer used its underlay meanwhile and the exit again once approved"

lab_step "--exit-node= leaves the host as before"
mesh_knit peer set --exit-node= >/dev/null || lab_fail "knit set --exit-node= failed"
lab_poll 3 eval '[[ "$(host_state)" == "$BEFORE_EXIT" ]]' || lab_fail "the host differs after unsetting the exit: $(diff <(echo "$BEFORE_EXIT") <(host_state))"
mesh_status peer | jq -e '.self.exit_node == null' >/dev/null || lab_fail "status still has an exit node"
lab_pass "rules, tables and sysctls as before"

lab_step "a killed knitd's leftovers go when knitd starts again; a stopped one leaves nothing"
mesh_knit peer set --exit-node gw >/dev/null || lab_fail "knit set --exit-node gw failed"
lab_poll 3 active_gw || lab_fail "not active again"
# Killed: no undo, and no UAPI socket removal either (this run's socket, removed here by hand).
KILLED=${LAB_WG_PID[$PEER_IF]}
kill -KILL "$KILLED"
wait "$KILLED" 2>/dev/null || true
unset "LAB_WG_PID[$PEER_IF]" "MESH_AGENT_IF[peer]"
MESH_AGENTS=(exit)
rm -f "/var/run/wireguard/$PEER_IF.sock"
lab_poll 3 lab__link_gone "$PEER_NS" "$PEER_IF" || lab_fail "the killed knitd's TUN is still there"
grep -q 5270 <<<"$(ip -n "$PEER_NS" rule show)" || lab_fail "expected a killed knitd to leave its rule behind"
mesh_agent_start peer "$PEER_NS"
# It removes them at start (before its UAPI socket appears), then uses the exit again (the
# setting is kept): one rule per family, not two; the final diff below shows rp_filter came back.
lab_wait_for 5 "the restarted knitd to report the leftovers" grep -q "exit node: removed [0-9]* host changes left by an earlier run" "$LAB_DIR/logs/knitd-$PEER_IF".*.log
lab_poll 10 active_gw || lab_fail "the restarted knitd does not use the exit (settings kept): $(mesh_status peer | jq -c .self.exit_node)"
[[ $(grep -c "^5270:" <<<"$(ip -n "$PEER_NS" rule show)") == 1 && $(grep -c "^5270:" <<<"$(ip -n "$PEER_NS" -6 rule show)") == 1 ]] \
  || lab_fail "stale and new rules side by side: $(ip -n "$PEER_NS" rule show)"
mesh_agent_stop peer
[[ "$(host_state)" == "$BEFORE_KNITD" ]] || lab_fail "the host differs after knitd stopped: $(diff <(echo "$BEFORE_KNITD") <(host_state))"
lab_pass "stale rules removed at start; after a stop: rules, tables and sysctls as before knitd"

lab_step "the exit: --advertise-exit-node=false undoes its translation; a killed knitd's is undone by the next; a stopped one leaves nothing"
mesh_knit exit set --advertise-exit-node=false >/dev/null || lab_fail "knit set --advertise-exit-node=false failed"
lab_poll 3 eval '[[ "$(exit_state)" == "$EXIT_BEFORE_KNITD" ]]' || lab_fail "the exit differs after --advertise-exit-node=false: $(diff <(echo "$EXIT_BEFORE_KNITD") <(exit_state))"
mesh_knit exit set --advertise-exit-node=true >/dev/null || lab_fail "knit set --advertise-exit-node=true failed"
lab_poll 3 snat6 || lab_fail "the exit does not translate ::/0 again"
KILLED=${LAB_WG_PID[$EXIT_IF]}
kill -KILL "$KILLED"
wait "$KILLED" 2>/dev/null || true
unset "LAB_WG_PID[$EXIT_IF]" "MESH_AGENT_IF[exit]"
MESH_AGENTS=()
rm -f "/var/run/wireguard/$EXIT_IF.sock"
lab_poll 3 lab__link_gone "$EXIT_NS" "$EXIT_IF" || lab_fail "the killed knitd's TUN is still there"
grep -q "lookup 1802371155" <<<"$(ip -n "$EXIT_NS" -6 rule)" || lab_fail "expected a killed knitd to leave its IPv6 rules behind: $(ip -n "$EXIT_NS" -6 rule)"
mesh_agent_start exit "$EXIT_NS"
lab_wait_for 5 "the restarted knitd to remove the IPv6 leftovers" grep -q "removing the IPv6 SNAT rules an earlier knitd left" "$LAB_DIR/logs/knitd-$EXIT_IF".*.log
mesh_agent_stop exit
[[ "$(exit_state)" == "$EXIT_BEFORE_KNITD" ]] || lab_fail "the exit differs after knitd stopped: $(diff <(echo "$EXIT_BEFORE_KNITD") <(exit_state))"
lab_pass "IPv4 and IPv6 rules, routes and reserved ports of the exit as before knitd"
