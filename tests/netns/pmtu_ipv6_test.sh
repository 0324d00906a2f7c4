#!/usr/bin/env bash
# No black holes over an IPv6 underlay (issue 13): the IPv4 lab of pmtu_test.sh, rebuilt with
# IPv6 only outside the tunnel. Site a's link carries 1280-byte packets (IPv6's minimum) and the
# router in front of it sends no ICMPv6 Packet Too Big. A full tunnel packet (1420 inside) is
# 1500 bytes outside: IPv6 40 + UDP 8 + WireGuard 32 = 80 bytes of overhead, so the path carries
# a tunnel MTU of 1200. IPv6 routers never fragment, so an oversized datagram is simply lost.
#
#   [kn-co-SFX] coordinator [2001:db8:100::2]:7443      [kn-ra-SFX] knit-relay "ra" 2001:db8:101::2
#                     \                                        /
#                      +-------- [kn-core-SFX] router ---------+
#                   MTU 1280 /    PTB dropped     \ MTU 1500
#   [kn-a-SFX] knitd "a" 2001:db8:1::2      [kn-b-SFX] knitd "b" 2001:db8:2::2
#
# Judged by the kernel's counters (/proc/net/snmp6): Ip6InTooBigErrors on the router counts the
# datagrams it could not forward (with the feature: only path MTU probes), Ip6FragCreates on the
# hosts the fragments they made (none: knitd sends with DF, and IPv6 hosts fragment only their
# own oversized sends). Three runs: Packet Too Big dropped (5 MiB each way, sha256, path_mtu
# 1200 reported both ways, no too-big read by knitd, an inner IPv6 ping -M do told
# 1280, IPv6's minimum, a UDP sender's 1400-byte datagrams refused and its 1172-byte ones arriving); allowed (the same, and knitd reads the
# PTB through IPV6_RECVERR and uses it as a hint); UDP blocked at the router, so the tunnel
# rides knit-relay's TCP over IPv6 (the router clamps the outer MSS, as PPPoE routers do).
#
# Knobs: PMTU_MB (MiB each way, default 5).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/mesh.sh"
lab_init ping jq nc nft

MB=${PMTU_MB:-5}

lab_step "topology: coordinator, relay and two agents on an IPv6-only underlay; a's link carries 1280 bytes"
lab_router_add core
CORE=$(lab_ns core)
# v6_host LABEL NET — a namespace on the router's link NET (2001:db8:NET::/64), host ::2.
v6_host() {
  lab_ns_add "$1"
  lab_uplink "$(lab_ns "$1")" "$(lab_name "h$1")" "2001:db8:$2::2/64" "$CORE" "$(lab_name "r$1")" "2001:db8:$2::1/64"
}
v6_host co 100
v6_host ra 101
v6_host a 1
v6_host b 2
A_NS=$(lab_ns a) B_NS=$(lab_ns b)
ip -n "$A_NS" link set "$(lab_name ha)" mtu 1280
ip -n "$CORE" link set "$(lab_name ra)" mtu 1280
# IPv6 has no IPv4 here: the agents' underlay is v6 only (the tunnel still carries mesh IPv4).
lab_nft "$CORE" <<EOF
table inet knit_lab_pmtu6 {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    tcp flags & syn == syn tcp option maxseg size set 1200
  }
  chain output {
    type filter hook output priority filter; policy accept;
    icmpv6 type packet-too-big counter drop
  }
}
EOF
lab_ping "$A_NS" 2001:db8:2::2 5
lab_ping "$A_NS" 2001:db8:100::2 5

MESH_COORD_NS=$(lab_ns co) MESH_COORD_ADDR="[2001:db8:100::2]:7443" MESH_COORD_STATE="$LAB_DIR/state/coordinator"
mesh_coordinator_start
MESH_RELAY_NS[ra]=$(lab_ns ra) MESH_RELAY_ADDR[ra]="[2001:db8:101::2]"
mesh_relay_start ra

# snmp6 NS FIELD — one counter of /proc/net/snmp6 in NS.
snmp6() { ip netns exec "$1" awk -v f="$2" '$1 == f { print $2 }' /proc/net/snmp6; }
# too_big: datagrams the router could not forward for size, fragments the hosts made.
too_big() {
  printf '%s %s\n' "$(snmp6 "$CORE" Ip6InTooBigErrors)" \
    $(( $(snmp6 "$A_NS" Ip6FragCreates) + $(snmp6 "$B_NS" Ip6FragCreates) + $(snmp6 "$CORE" Ip6FragCreates) ))
}
agent_log() { mesh_agent_log "$@"; }
hints_used() { cat "$@" | grep -c "ICMP too big: the path to" || true; }
too_big_read() { mesh_shutdown_counter udp_icmp_too_big "$@"; }
f=$(lab_data_file "$MB")
UDP_PMTU="${KNIT_TEST_TOOLS:-$KNIT_BIN/../tests/tools}/udp_pmtu"
[[ -x "$UDP_PMTU" ]] || lab_fail "$UDP_PMTU is missing: build the project first"

# agents_up SUFFIX PATH — starts both agents, joins them, waits for PATH (direct or relay) both ways.
agents_up() {
  A=a$1 B=b$1
  mesh_agent_start "$A" "$A_NS"
  mesh_agent_start "$B" "$B_NS"
  mesh_agent_up "$A"
  mesh_agent_up "$B"
  mesh_wait_full 20
  mesh_ping "$A" "$B" 15
  mesh_wait_path 30 "$A" "$B" "$2"
  mesh_wait_path 30 "$B" "$A" "$2"
  lab_log "$2 path both ways: $A -> $(mesh_peer "$A" "$B" endpoint), $B -> $(mesh_peer "$B" "$A" endpoint)"
}
agents_down() {
  LOG_A=$(agent_log "$A") LOG_B=$(agent_log "$B")
  mesh_agent_down "$A"; mesh_agent_down "$B"
  mesh_agent_stop "$A"; mesh_agent_stop "$B"
}
# transfer NAME PORT — MB MiB each way at once between the agents' mesh addresses, sha256-checked.
transfer() {
  lab_tcp_start "$1-down" "$B_NS" "$A_NS" "$(mesh_ip "$A")" "$2" "$f"
  lab_tcp_start "$1-up" "$A_NS" "$B_NS" "$(mesh_ip "$B")" "$(($2 + 1))" "$f"
  lab_tcp_finish "$1-down" 60
  lab_tcp_finish "$1-up" 60
}
# direct_checks RUN — no fragments, at most the probes too big, path_mtu 1200 both ways.
direct_checks() {
  local drops frags drops0 frags0 x y mtu
  read -r drops frags <<<"$(too_big)"
  read -r drops0 frags0 <<<"$BEFORE"
  lab_log "$1: $((drops - drops0)) datagrams too big at the router (path MTU probes), $((frags - frags0)) fragments made"
  (( drops - drops0 <= 80 )) || lab_fail "$1: $((drops - drops0)) datagrams too big for the hop: more than the probes"
  (( drops - drops0 > 0 )) || lab_fail "$1: nothing was too big for the hop: the test does not build the path it means to"
  (( frags - frags0 == 0 )) || lab_fail "$1: $((frags - frags0)) fragments were made: the tunnel must fit the path"
  for x in "$A" "$B"; do
    y=$([[ "$x" == "$A" ]] && echo "$B" || echo "$A")
    mtu=$(mesh_peer "$x" "$y" path_mtu)
    [[ "$mtu" =~ ^[0-9]+$ ]] && (( mtu <= 1200 && mtu >= 1184 )) \
      || lab_fail "$1: $x reports path_mtu $mtu to $y; a 1280-byte IPv6 path carries a tunnel MTU of 1200"
  done
  MTU=$mtu
}

lab_step "Packet Too Big dropped: direct path over IPv6"
BEFORE=$(too_big)
agents_up 1 direct
transfer ptb-dropped 5001
direct_checks "PTB dropped"
# Inside the tunnel too: an IPv6 packet too big for the proven path is answered with an ICMPv6
# Packet Too Big, as a router would. IPv6 never goes below 1280 (RFC 8200 §5), so the answer
# says 1280 although the path carries 1200, and ping -M do learns 1280. (A packet of 1201..1280
# bytes would need the outer datagram fragmented; see README, "Troubleshooting".)
B6=$(mesh_self "$B" ipv6)
# knitd answers only once the full size has gone unanswered three times (the path is proven
# smaller); the transfers above may finish before that.
lab_wait_for 20 "$A to prove the path to $B smaller than the tunnel" \
  grep -q "proven smaller than the tunnel MTU" "$(agent_log "$A")"
out=$(ip netns exec "$A_NS" ping -6 -M do -s 1300 -c 2 -i 0.3 -W 1 -n "$B6" 2>&1 || true)
grep -Eq "mtu ?= ?1280" <<<"$out" || lab_fail "ping -6 -M do -s 1300 to $B6 was not told the MTU (1280, IPv6's minimum): $(tr '\n' ' ' <<<"$out")"
ip netns exec "$A_NS" ping -6 -M do -s 1152 -c 1 -W 2 -n -q "$B6" >/dev/null \
  || lab_fail "a 1200-byte IPv6 ping -M do did not cross"
lab_pass "inner IPv6: ping -M do -s 1300 told 'mtu=1280' by knitd; a 1200-byte ping crosses"
# A UDP application doing its own path MTU discovery over the tunnel's IPv4 (DF, IP_MTU after
# EMSGSIZE): 1400-byte datagrams are answered "fragmentation needed" by knitd, it learns 1200,
# and its 1172-byte datagrams arrive.
lab_bg udp-recv "$B_NS" "$UDP_PMTU" recv "$(mesh_ip "$B")" 5300 4
lab_wait_for 3 "the UDP receiver" grep -q listening "$LAB_DIR/logs/udp-recv.log"
RECV_PID=$LAB_BG_LAST
sent=$(ip netns exec "$A_NS" "$UDP_PMTU" send "$(mesh_ip "$B")" 5300 1400 40)
lab_bg_wait "$RECV_PID" 8
got=$(tail -n 1 "$LAB_DIR/logs/udp-recv.log")
read -r _ n_sent _ n_refused _ mtu _ size <<<"$sent"
read -r _ n_got _ largest <<<"$got"
(( n_refused >= 1 && mtu == 1200 && size == 1172 )) || lab_fail "the UDP sender was not told the path MTU: $sent"
(( n_got >= 30 && largest <= 1172 )) || lab_fail "the datagrams that fit did not get through: $got (sender: $sent)"
lab_pass "UDP: 1400-byte datagrams refused after knitd's answer (IP_MTU $mtu); $n_got datagrams of $size bytes arrived"
agents_down
read_none=$(too_big_read "$LOG_A" "$LOG_B")
(( read_none == 0 )) || lab_fail "$read_none Packet Too Big read with the ICMPv6 dropped: the test does not block what it means to"
lab_pass "$MB MiB both ways across a 1280-byte IPv6 hop without ICMPv6: path_mtu $MTU, 0 fragments, no hint read"

lab_step "Packet Too Big allowed: knitd reads it (IPV6_RECVERR) as a hint"
ip netns exec "$CORE" nft flush chain inet knit_lab_pmtu6 output
ip netns exec "$CORE" nft add rule inet knit_lab_pmtu6 output icmpv6 type packet-too-big counter accept
BEFORE=$(too_big)
agents_up 2 direct
transfer ptb-allowed 5011
direct_checks "PTB allowed"
used=$(hints_used "$(agent_log "$A")" "$(agent_log "$B")")
agents_down
ptb=$(ip netns exec "$CORE" nft list chain inet knit_lab_pmtu6 output | grep -o 'packets [0-9]*' | awk '{print $2}')
read_ptb=$(too_big_read "$LOG_A" "$LOG_B")
lab_log "PTB allowed: the router sent ${ptb:-0} Packet Too Big, knitd read $read_ptb, $used changed a path MTU search"
(( ${ptb:-0} > 0 )) || lab_fail "the router sent no Packet Too Big: the ICMPv6 case was not exercised"
(( read_ptb > 0 && used > 0 )) || lab_fail "knitd did not use the router's Packet Too Big as a hint: $read_ptb read, $used used"
lab_pass "$MB MiB both ways with Packet Too Big allowed: ${ptb:-0} sent, $used used as hints, 0 fragments, path_mtu $MTU"

lab_step "relayed over IPv6: UDP between the agents blocked, the tunnel over knit-relay's TCP"
ip netns exec "$CORE" nft add rule inet knit_lab_pmtu6 forward ip6 saddr 2001:db8:1::/64 meta l4proto udp counter drop
agents_up 3 relay
transfer relayed 5021
lab_log "relayed: path $(mesh_path "$A" "$B"), relay $(mesh_peer "$A" "$B" relay), path_mtu $(mesh_peer "$A" "$B" path_mtu)"
agents_down
lab_pass "$MB MiB both ways through knit-relay over IPv6 across the 1280-byte hop"
