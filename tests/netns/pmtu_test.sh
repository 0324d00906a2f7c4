#!/usr/bin/env bash
# No black holes: a site whose WAN carries only 1280-byte packets, and no ICMP "fragmentation
# needed" from any router (issue 13). The tunnel MTU stays at its default, 1420, so a full
# tunnel packet is 1480 bytes outside. With path MTU discovery (padded disco pings) and MSS
# clamping, TCP transfers across the mesh complete both ways; with KNIT_PMTU=off the same
# transfers move (almost) nothing (with KNIT_OFFLOADS=off, see below), which shows the test can
# fail.
#
#   [kn-coord-SFX] coordinator   [kn-ra-SFX] knit-relay "ra"   [kn-pub-SFX] knitd "pub"
#            \                            |                            /
#             +--------------------- [kn-core-SFX] "the internet" ----+
#                                         |  mx-SFX 203.0.113.14/28   MTU 1280, ICMP frag-needed
#                                         |  mw-SFX 203.0.113.1/28    MTU 1280  dropped (both ends)
#                                   [kn-mr-SFX] router: masquerade; clamps the MSS of forwarded
#                                         |     TCP to 1240 (as PPPoE routers do, so knitd's own
#                                         |     coordinator and relay streams survive)
#                                   [kn-mh1-SFX] knitd "site" 10.1.0.2
#
# The wire is judged by the kernel's own counters (/proc/net/snmp): IpFragFails on both routers
# counts the packets dropped as too big for the hop (silently: the ICMP is dropped too), and
# IpFragCreates everywhere the fragments made. With the feature only the path MTU probes are too
# big (a few dozen) and nothing is fragmented; without it every full-size data packet is dropped.
#
# Then a UDP application doing its own path MTU discovery (DF, IP_MTU after EMSGSIZE) learns
# 1216 from knitd's answer and its smaller datagrams arrive; and the routers are let send their
# ICMP: knitd still makes no fragment (DF without local fragmentation while it probes) and
# reads that ICMP (IP_RECVERR) as a hint for its search, while the runs without it read none; a knitd
# pair configured only through `wg` completes its transfers there too (the kernel fragments),
# and its next connections are clamped to what the ICMP said (no fragments);
# with UDP blocked at the site the tunnel goes through knit-relay and carries full size.
#
# Knobs: PMTU_MB (MiB each way, default 5).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/mesh.sh"
lab_init ping jq nc nft

MB=${PMTU_MB:-5}

lab_step "topology: coordinator, relay, pub on the internet; site m behind a 1280-byte WAN"
lab_nat_core
mesh_coordinator_start
mesh_relay_start ra
lab_core_host pub
lab_site_kernel m port-restricted
R=$(lab_site_router m)
WAN=${LAB_SITE_WAN[m]}
CIF=${LAB_SITE_CORE_IF[m]}
ip -n "$R" link set "$WAN" mtu 1280
ip -n "$LAB_CORE" link set "$CIF" mtu 1280
# No ICMP about packets too big, from either router; outer TCP clamped at the site router; and
# counters of the UDP packets too long for the hop, in each direction.
lab_nft "$R" <<EOF
table inet knit_lab_pmtu {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    tcp flags & syn == syn tcp option maxseg size set 1240
  }
  chain output {
    type filter hook output priority filter; policy accept;
    icmp type destination-unreachable icmp code frag-needed counter drop
  }
}
EOF
lab_nft "$LAB_CORE" <<EOF
table inet knit_lab_pmtu {
  chain output {
    type filter hook output priority filter; policy accept;
    icmp type destination-unreachable icmp code frag-needed counter drop
  }
}
EOF
# ip_snmp NS FIELD — one counter of the Ip: line of /proc/net/snmp in NS. IpFragFails counts
# packets a router dropped because they were too big for the next hop with DF set (forwarded
# packets, and each segment of a forwarded GSO train); IpFragCreates counts fragments made.
ip_snmp() {
  ip netns exec "$1" awk -v f="$2" '$1 == "Ip:" { if (!h) { split($0, k); h = 1 } else { split($0, v); for (i in k) if (k[i] == f) print v[i] } }' /proc/net/snmp
}
# too_big: packets dropped at the 1280-byte hop (both routers), fragments made by the hosts.
too_big() {
  printf '%s %s\n' $(( $(ip_snmp "$R" FragFails) + $(ip_snmp "$LAB_CORE" FragFails) )) \
    $(( $(ip_snmp "$P" FragCreates) + $(ip_snmp "$H" FragCreates) + $(ip_snmp "$R" FragCreates) + $(ip_snmp "$LAB_CORE" FragCreates) ))
}
UDP_PMTU="${KNIT_TEST_TOOLS:-$KNIT_BIN/../tests/tools}/udp_pmtu"
[[ -x "$UDP_PMTU" ]] || lab_fail "$UDP_PMTU is missing: build the project first"
H=$(lab_site_host m)
P=$(lab_host_ns pub)
f=$(lab_data_file "$MB")

# run LABEL_SUFFIX — starts both agents (the environment decides KNIT_PMTU), joins, waits for
# the direct path. Sets A and B to the agents' labels.
agents_up() {
  A=pub$1 B=site$1
  mesh_agent_start "$A" "$P"
  mesh_agent_start "$B" "$H"
  mesh_agent_up "$A"
  mesh_agent_up "$B"
  mesh_wait_full 20
  mesh_ping "$B" "$A" 10
  mesh_wait_path 30 "$B" "$A" direct
  mesh_wait_path 30 "$A" "$B" direct
  lab_log "direct path both ways: $B -> $(mesh_peer "$B" "$A" endpoint), $A -> $(mesh_peer "$A" "$B" endpoint)"
}
agents_down() {
  LOG_A=$(agent_log "$A") LOG_B=$(agent_log "$B")
  mesh_agent_down "$A"; mesh_agent_down "$B"
  mesh_agent_stop "$A"; mesh_agent_stop "$B"
}
# What knitd says of ICMP "fragmentation needed" about its own datagrams (IP_RECVERR): hints
# that changed a path MTU search (a log line each, while running), and every too-big the socket
# read (the shutdown line's udp_icmp_too_big, after agents_down).
agent_log() { mesh_agent_log "$@"; }
hints_used() { cat "$@" | grep -c "ICMP too big: the path to" || true; }
too_big_read() { mesh_shutdown_counter udp_icmp_too_big "$@"; }

# ---------------------------------------------------------------- without the feature
# Offloads off too: Linux sends a UDP_SEGMENT train without DF whenever the train is longer
# than the route MTU (ip_make_skb compares the whole train), so routers fragment those trains
# and a transfer may get through, slowly, by luck of batching. One datagram per send always
# carries DF, as wireguard-go's and the kernel module's do: the black hole of the issue.
lab_step "KNIT_PMTU=off: the black hole"
before=$(too_big)
KNIT_PMTU=off KNIT_OFFLOADS=off agents_up 0
mesh_ping "$A" "$B" 5
lab_pass "ping works both ways (the mesh looks healthy)"
out="$LAB_DIR/data/recv-off.bin"
lab_bg off-recv "$H" timeout 12 sh -c 'exec nc -l -s "$1" -p 5100 </dev/null >"$2"' nc "$(mesh_ip "$B")" "$out"
lab_wait_for 10 "a listener in $H" lab__listening "$H" 5100
lab_bg off-send "$P" timeout 8 sh -c 'exec nc -N "$1" 5100 <"$2"' nc "$(mesh_ip "$B")" "$f"
lab_bg_wait "$LAB_BG_LAST" 15
got=$(stat -c %s "$out" 2>/dev/null || echo 0)
read -r drops frags <<<"$(too_big)"
read -r drops0 frags0 <<<"$before"
lab_log "without: $got of $((MB * 1048576)) bytes arrived in 8 s; $((drops - drops0)) packets dropped as too big at the hop, $((frags - frags0)) fragments made"
(( got < 1048576 )) || lab_fail "without path MTU discovery $got bytes crossed a 1280-byte hop: the test does not build the black hole it means to"
(( drops - drops0 > 0 )) || lab_fail "without the feature no packet was dropped as too big at the hop: the black hole is not where the test thinks"
lab_pass "KNIT_PMTU=off: $got bytes of $MB MiB in 8 s (the black hole the issue describes)"
agents_down

# ---------------------------------------------------------------- with it
lab_step "path MTU discovery and MSS clamping on"
before=$(too_big)
agents_up 1
lab_tcp_start down "$P" "$H" "$(mesh_ip "$B")" 5001 "$f"
lab_tcp_start up "$H" "$P" "$(mesh_ip "$A")" 5002 "$f"
lab_tcp_finish down 60
lab_tcp_finish up 60
read -r drops frags <<<"$(too_big)"
read -r drops0 frags0 <<<"$before"
lab_log "with: $((drops - drops0)) packets dropped as too big at the hop (path MTU probes), $((frags - frags0)) fragments made"
(( drops - drops0 <= 80 )) || lab_fail "with path MTU discovery $((drops - drops0)) packets too big for the hop were sent: more than the probes"
(( frags - frags0 == 0 )) || lab_fail "$((frags - frags0)) fragments were made: the tunnel must fit the path, not be fragmented"
# What each side learned, as `knit status` shows it.
for pair in "$A $B" "$B $A"; do
  read -r x y <<<"$pair"
  mtu=$(mesh_peer "$x" "$y" path_mtu)
  lab_log "$x: path_mtu to $y = $mtu (tunnel MTU $(mesh_self "$x" mtu))"
  [[ "$mtu" =~ ^[0-9]+$ ]] && (( mtu <= 1220 && mtu >= 1200 )) \
    || lab_fail "$x reports path_mtu $mtu to $y; a 1280-byte IPv4 path carries a tunnel MTU of 1216"
done
human=$(mesh_knit "$A" status)
grep -q "mtu 1216" <<<"$human" || lab_fail "\`knit status\` does not show the smaller path MTU: $human"
lab_pass "knit status shows it: $(grep "$B" <<<"$human" | tr -s ' ')"
# Not only TCP: a packet too big for the proven path gets the answer a router gives (ICMP
# "fragmentation needed" with the MTU), so ping -M do, UDP and QUIC adapt too.
# knitd answers only once the full size has gone unanswered three times (the path is proven
# smaller); the transfers above may finish before that.
lab_wait_for 20 "$A to prove the path to $B smaller than the tunnel" \
  grep -q "proven smaller than the tunnel MTU" "$(agent_log "$A")"
out=$(ip netns exec "${MESH_AGENT_NS[$A]}" ping -M do -s 1300 -c 2 -i 0.3 -W 1 -n "$(mesh_ip "$B")" 2>&1 || true)
grep -Eq "Frag needed and DF set \(mtu = 1216\)|message too long, mtu=1216" <<<"$out" \
  || lab_fail "ping -M do -s 1300 across the 1280-byte hop was not told the MTU: $out"
route=$(ip netns exec "${MESH_AGENT_NS[$A]}" ip -4 route get "$(mesh_ip "$B")")
grep -q "mtu 1216" <<<"$route" || lab_fail "the host did not learn the path MTU to $B: $route"
ip netns exec "${MESH_AGENT_NS[$A]}" ping -M do -s 1188 -c 1 -W 2 -n -q "$(mesh_ip "$B")" >/dev/null \
  || lab_fail "a 1216-byte ping -M do did not cross"
lab_pass "ping -M do: told 'mtu = 1216' by knitd; the host's route cache: $(grep -o 'mtu [0-9]*' <<<"$route")"
# IPv6 promises every link 1280 bytes, so knitd cannot tell an IPv6 sender 1216: a 1280-byte
# IPv6 packet is sealed and sent without DF, and the router before the hop fragments it.
frag0=$(ip_snmp "$R" FragCreates)
frag0=$((frag0 + $(ip_snmp "$LAB_CORE" FragCreates)))
B6=$(mesh_self "$B" ipv6)
ip netns exec "${MESH_AGENT_NS[$A]}" ping -6 -M do -s 1232 -c 2 -i 0.3 -W 2 -n -q "$B6" >/dev/null \
  || lab_fail "a 1280-byte IPv6 ping across the 1216-byte path did not cross"
frag1=$(( $(ip_snmp "$R" FragCreates) + $(ip_snmp "$LAB_CORE" FragCreates) ))
(( frag1 > frag0 )) || lab_fail "the 1280-byte IPv6 pings crossed without being fragmented outside: the path is not what the test thinks"
lab_pass "a 1280-byte IPv6 ping crosses (IPv6's minimum MTU): sent without DF, $((frag1 - frag0)) fragments made by the routers"
# A UDP application doing its own path MTU discovery (DF, IP_MTU on EMSGSIZE, as QUIC stacks
# do): 1400-byte datagrams are answered "too big" by knitd, it learns 1216, and what it sends
# then gets through. The host forgets what ping taught it first.
ip netns exec "${MESH_AGENT_NS[$A]}" ip route flush cache
lab_bg udp-recv "${MESH_AGENT_NS[$B]}" "$UDP_PMTU" recv "$(mesh_ip "$B")" 5300 4
lab_wait_for 3 "the UDP receiver" grep -q listening "$LAB_DIR/logs/udp-recv.log"
RECV_PID=$LAB_BG_LAST
sent=$(ip netns exec "${MESH_AGENT_NS[$A]}" "$UDP_PMTU" send "$(mesh_ip "$B")" 5300 1400 40)
lab_bg_wait "$RECV_PID" 8
got=$(tail -n 1 "$LAB_DIR/logs/udp-recv.log")
lab_log "UDP sender: $sent; receiver: $got"
read -r _ n_sent _ n_refused _ mtu _ size <<<"$sent"
read -r _ n_got _ largest <<<"$got"
(( n_refused >= 1 && mtu == 1216 && size == 1188 )) || lab_fail "the UDP sender was not told the path MTU: $sent"
(( n_got >= 30 && largest <= 1188 )) || lab_fail "the datagrams that fit did not get through: $got (sender: $sent)"
lab_pass "UDP: 1400-byte datagrams refused with EMSGSIZE after knitd's answer (IP_MTU $mtu); $n_got datagrams of $size bytes arrived"
agents_down
read_none=$(too_big_read "$LOG_A" "$LOG_B")
(( read_none == 0 )) || lab_fail "$read_none ICMP too-big read with the ICMP dropped: the test does not block what it means to"
lab_pass "$MB MiB both ways across a 1280-byte hop without ICMP (no too-big hint read: nothing depends on it)"

# ---------------------------------------------------------------- ICMP allowed
# Now the routers send "fragmentation needed" for the outer packets. The kernel would learn
# 1280 from it and fragment knitd's full-size datagrams itself (and carry oversized path MTU
# probes in fragments, so the search would "prove" the full size). knitd sets DF without local
# fragmentation (IP_PMTUDISC_PROBE) while it discovers the path MTU: no fragments anywhere.
# knitd reads the ICMP itself (IP_RECVERR) as a hint that cuts its search short.
lab_step "the same hop with ICMP allowed: still no outer fragmentation"
for ns in "$R" "$LAB_CORE"; do
  ip netns exec "$ns" nft flush chain inet knit_lab_pmtu output
  ip netns exec "$ns" nft add rule inet knit_lab_pmtu output icmp type destination-unreachable icmp code frag-needed counter accept
done
icmp_sent() {
  local n=0 ns c
  for ns in "$R" "$LAB_CORE"; do
    c=$(ip netns exec "$ns" nft list chain inet knit_lab_pmtu output | grep -o 'packets [0-9]*' | awk '{print $2}')
    n=$((n + ${c:-0}))
  done
  echo "$n"
}
before=$(too_big)
agents_up 2
lab_tcp_start down2 "$P" "$H" "$(mesh_ip "$B")" 5011 "$f"
lab_tcp_start up2 "$H" "$P" "$(mesh_ip "$A")" 5012 "$f"
lab_tcp_finish down2 60
lab_tcp_finish up2 60
read -r drops frags <<<"$(too_big)"
read -r drops0 frags0 <<<"$before"
icmp=$(icmp_sent)
lab_log "ICMP allowed: $icmp frag-needed sent by the routers, $((drops - drops0)) packets too big at the hop, $((frags - frags0)) fragments made"
(( icmp > 0 )) || lab_fail "no router sent fragmentation-needed: the ICMP case was not exercised"
(( frags - frags0 == 0 )) || lab_fail "$((frags - frags0)) fragments were made with ICMP allowed: knitd's datagrams must fit the path, not be fragmented"
(( drops - drops0 <= 80 )) || lab_fail "$((drops - drops0)) packets too big for the hop: more than the probes"
mtu=$(mesh_peer "$A" "$B" path_mtu)
(( mtu <= 1220 && mtu >= 1200 )) || lab_fail "with ICMP allowed, $A reports path_mtu $mtu to $B"
# The ICMP reached knitd (IP_RECVERR) and lowered the search at once: a hint, used.
used=$(hints_used "$(agent_log "$A")" "$(agent_log "$B")")
agents_down
read_icmp=$(too_big_read "$LOG_A" "$LOG_B")
lab_log "ICMP allowed: knitd read $read_icmp too-big about its datagrams, $used changed a path MTU search"
(( read_icmp > 0 && used > 0 )) || lab_fail "knitd did not use the routers' fragmentation-needed as a hint: $read_icmp read, $used used"
lab_pass "$MB MiB both ways with ICMP allowed: $icmp frag-needed, $used used as hints by knitd, 0 fragments, path_mtu $mtu"

# The relayed path: UDP blocked at the site, so the tunnel rides knit-relay's TCP stream across
# the same hop. The relay carries any WireGuard datagram up to 65,535 bytes and TCP segments
# itself to the path (the router clamps the outer MSS), so there is nothing to discover: the
# full tunnel MTU works.
lab_step "relayed: UDP blocked at the site, the tunnel over knit-relay across the hop"
ip netns exec "$R" nft add rule inet knit_lab_pmtu forward meta l4proto udp counter drop
A=pub3 B=site3
mesh_agent_start "$A" "$P"
mesh_agent_start "$B" "$H"
mesh_agent_up "$A"
mesh_agent_up "$B"
mesh_wait_full 20
mesh_ping "$B" "$A" 15
mesh_wait_path 20 "$B" "$A" relay
lab_tcp_start down3 "$P" "$H" "$(mesh_ip "$B")" 5031 "$f"
lab_tcp_start up3 "$H" "$P" "$(mesh_ip "$A")" 5032 "$f"
lab_tcp_finish down3 60
lab_tcp_finish up3 60
relayed_mtu=$(mesh_peer "$B" "$A" path_mtu)
lab_log "relayed: path $(mesh_path "$B" "$A"), path_mtu $relayed_mtu"
agents_down
ip netns exec "$R" nft flush chain inet knit_lab_pmtu forward
ip netns exec "$R" nft add rule inet knit_lab_pmtu forward tcp flags \& syn == syn tcp option maxseg size set 1240
lab_pass "$MB MiB both ways through knit-relay across the 1280-byte hop"

# A knitd pair set up only through `wg` (no coordinator, no disco, so no path MTU search) over
# the same hop, ICMP allowed: the hosts learn 1280 from the routers and fragment the outer
# packets themselves, so the transfer completes (README, "Troubleshooting": without the ICMP
# such a pair needs --mtu).
lab_step "a knitd pair configured only by wg, ICMP allowed: the transfer completes"
WGP=$(lab_name wp) WGH=$(lab_name wh)
# A fresh pair: the hosts forget what the mesh runs' ICMP taught them (the kernel would otherwise
# fragment from the first packet, and no router would have anything to say).
ip netns exec "$P" ip route flush cache
ip netns exec "$H" ip route flush cache
# Offloads off: one datagram per send always carries DF, so the hop answers with ICMP. (With
# UDP_SEGMENT, Linux sends a train longer than the route MTU without DF: routers fragment it,
# nobody sends an ICMP, and neither the kernel nor knitd ever learns the path MTU.)
KNIT_OFFLOADS=off lab_wg_start knitd "$P" "$WGP"
KNIT_OFFLOADS=off lab_wg_start knitd "$H" "$WGH"
lab_wg_setup "$WGP" 51900 10.98.0.1/24
lab_wg_setup "$WGH" 51901 10.98.0.2/24
# The site is behind its NAT: it knows pub's endpoint and keeps the mapping open.
lab_wg_link "$WGP" "$(lab_host_addr pub)" "$WGH" - 5
lab_wg_wait_handshake "$WGH" "$WGP" 15
before=$(too_big)
lab_tcp_start wgdown "$P" "$H" 10.98.0.2 5021 "$f"
lab_tcp_start wgup "$H" "$P" 10.98.0.1 5022 "$f"
lab_tcp_finish wgdown 60
lab_tcp_finish wgup 60
read -r drops frags <<<"$(too_big)"
read -r drops0 frags0 <<<"$before"
lab_log "wg-configured pair: $((drops - drops0)) packets too big at the hop, $((frags - frags0)) fragments made by the hosts"
# knitd learns the same path MTU (the ICMP through IP_RECVERR, and the kernel's route cache on
# the next SYN) and clamps new TCP connections to it, SYN and SYN-ACK both ways: a second
# transfer needs no fragment. (The count of ICMP hints is logged only: a host whose kernel still
# knew the path from the mesh runs sends nothing too big, and knitd reads its route cache instead.)
learned=$(cat "$LAB_DIR/logs/knitd-$WGP.log" "$LAB_DIR/logs/knitd-$WGH.log" | grep -c "ICMP: the path to .* carries at most 1280 bytes" || true)
before=$(too_big)
lab_tcp_start wgdown2 "$P" "$H" 10.98.0.2 5023 "$f"
lab_tcp_start wgup2 "$H" "$P" 10.98.0.1 5024 "$f"
lab_tcp_finish wgdown2 60
lab_tcp_finish wgup2 60
read -r drops frags <<<"$(too_big)"
read -r drops0 frags0 <<<"$before"
lab_wg_stop "$WGP"
lab_wg_stop "$WGH"
clamped=$(mesh_shutdown_counter mss_clamped "$LAB_DIR/logs/knitd-$WGP.log" "$LAB_DIR/logs/knitd-$WGH.log")
lab_log "wg-configured pair, second transfer: $((frags - frags0)) fragments, $((drops - drops0)) too big at the hop; $learned ICMP hints taken, SYNs clamped: $clamped"
(( frags - frags0 == 0 )) || lab_fail "after the ICMP, a new TCP connection between wg-configured peers still made $((frags - frags0)) fragments: not clamped to the path"
(( clamped > 0 )) || lab_fail "no SYN was clamped between the wg-configured peers"
lab_pass "$MB MiB both ways between wg-configured knitd peers across the 1280-byte hop (the kernel fragments after the ICMP); then, clamped to what that ICMP said, with no fragment"
