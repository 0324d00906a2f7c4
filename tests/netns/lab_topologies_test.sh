#!/usr/bin/env bash
# The NAT lab's other topologies (tests/lab/nat.sh) build, behave as NAT.md says, and tear down
# without leaving anything behind:
#   k1 kernel masquerade (port-restricted cone): ping out; a STUN client sees the public
#      address; RFC 5780 discovery says EIM/APDF
#   k2 masquerade random (symmetric): the two STUN server addresses see different ports (APDM)
#   k3 full cone for one UDP port (masquerade + WAN dnat): EIM/EIF from that port
#   k4 restricted cone for one UDP port (+ forward filter on contacted addresses): EIM/ADF
#   k5 two hosts behind a kernel NAT with the hairpin recipe: host 2 reaches host 1 through the
#      public address and host 1 sees the public address as the source
#   d1 double NAT (home NAT behind a 100.64.0.0/10 carrier NAT): ping across both; STUN sees
#      the carrier's address; still EIM/APDF
#   b1 UDP blocked at the router: TCP works, UDP (STUN, plain datagrams) does not
#
#                                [kn-stun-SFX] coturn A 198.51.100.1, B 198.51.100.2 (3478/3479)
#                                       |
#   [kn-peer-SFX] 192.0.2.1 ---- [kn-core-SFX] ----+---- 203.0.113.0/28  [kn-k1r] -- 10.1.0.0/24 [kn-k1h1]
#                                                  +---- 203.0.113.16/28 [kn-k2r] -- 10.2.0.0/24 [kn-k2h1]
#                                                  +---- 203.0.113.32/28 [kn-k3r] -- 10.3.0.0/24 [kn-k3h1]
#                                                  +---- 203.0.113.48/28 [kn-k4r] -- 10.4.0.0/24 [kn-k4h1]
#                                                  +---- 203.0.113.64/28 [kn-k5r] -- 10.5.0.0/24 [kn-k5h1], [kn-k5h2]
#                                                  +---- 203.0.113.80/28 [kn-d1c] carrier -- 100.64.6.0/24
#                                                  |                        -- [kn-d1r] home -- 10.6.0.0/24 [kn-d1h1]
#                                                  +---- 203.0.113.96/28 [kn-b1r] (drops UDP) -- 10.7.0.0/24 [kn-b1h1]
#   (every name also carries the run's suffix; each router's public address is .16i+1)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
lab_init ping nft tcpdump turnserver turnutils_natdiscovery turnutils_stunclient

PORT=40100   # the UDP port the full-cone / restricted-cone / hairpin recipes are about

# expect_nat NAME NS MAPPING FILTERING [natdiscovery options] — RFC 5780 discovery agrees.
expect_nat() {
  local name=$1 ns=$2 m=$3 f=$4
  shift 4
  lab_nat_discover "natdiscovery-$name" "$ns" "$@"
  [[ "$LAB_NAT_MAPPING" == "$m" && "$LAB_NAT_FILTERING" == "$f" ]] || {
    cat "$LAB_DIR/logs/natdiscovery-$name.log" >&2
    lab_fail "site $name: natdiscovery says $LAB_NAT_MAPPING/$LAB_NAT_FILTERING, expected $m/$f"
  }
  lab_pass "site $name: natdiscovery says $m/$f (${LAB_NAT_SECONDS} s; reflexive ${LAB_NAT_REFLEXIVE[*]})"
}

# expect_stun_public NAME NS PUBLIC — a STUN client behind the site sees PUBLIC.
expect_stun_public() {
  local mapped
  mapped=$(lab_stun_mapped "$2") || lab_fail "site $1: turnutils_stunclient got no answer from $LAB_STUN_A"
  [[ "${mapped%:*}" == "$3" ]] || lab_fail "site $1: STUN sees $mapped, expected the public address $3"
  lab_pass "site $1: turnutils_stunclient sees $mapped (the public address)"
}

lab_step "core, coturn, a peer"
lab_nat_core
lab_stun_start
lab_core_host peer
PEER=$(lab_host_ns peer) PEER_ADDR=$(lab_host_addr peer)

lab_step "k1: kernel masquerade (port-restricted cone)"
lab_site_kernel k1 port-restricted
lab_ping "$(lab_site_host k1)" "$PEER_ADDR" 5
lab_pass "site k1: ping $PEER_ADDR answered"
expect_stun_public k1 "$(lab_site_host k1)" "$(lab_site_public k1)"
expect_nat k1 "$(lab_site_host k1)" EIM APDF

lab_step "k2: masquerade random (symmetric)"
lab_site_kernel k2 symmetric
lab_ping "$(lab_site_host k2)" "$PEER_ADDR" 5
expect_nat k2 "$(lab_site_host k2)" APDM APDF
a=${LAB_NAT_REFLEXIVE[0]} b=${LAB_NAT_REFLEXIVE[1]}
[[ "${a%:*}" == "$(lab_site_public k2)" && "${b%:*}" == "$(lab_site_public k2)" ]] || lab_fail "site k2: reflexive addresses $a, $b are not the public address"
[[ "${a#*:}" != "${b#*:}" ]] || lab_fail "site k2: servers A and B saw the same port ($a, $b): not symmetric"
lab_pass "site k2: from one local socket, server A saw $a and server B saw $b (different ports)"

lab_step "k3: full cone for UDP port $PORT"
lab_site_kernel k3 full-cone --port "$PORT"
expect_nat k3 "$(lab_site_host k3)" EIM EIF -L "$(lab_site_addr k3)" -l "$PORT"

lab_step "k4: restricted cone for UDP port $PORT"
lab_site_kernel k4 restricted-cone --port "$PORT"
expect_nat k4 "$(lab_site_host k4)" EIM ADF -L "$(lab_site_addr k4)" -l "$PORT"

lab_step "k5: two hosts behind a hairpinning kernel NAT (port $PORT to host 1)"
lab_site_kernel k5 port-restricted --port "$PORT" --hairpin --hosts 2
K5_PUBLIC=$(lab_site_public k5)
lab_udp_open k5h1 "$(lab_site_host k5 1)" -v -l -p "$PORT"
lab_udp_open k5h2 "$(lab_site_host k5 2)" -p 40002 "$K5_PUBLIC" "$PORT"
lab_udp_send k5h2 "hello via the public address"
lab_udp_wait k5h1 "hello via the public address" 5 || lab_fail "site k5: host 2's datagram to $K5_PUBLIC:$PORT did not reach host 1"
from=$(sed -n 's/^Connection received on \([0-9.]*\) \([0-9]*\)$/\1:\2/p' "$LAB_DIR/logs/udp-k5h1.log")
[[ "${from%:*}" == "$K5_PUBLIC" ]] || lab_fail "site k5: host 1 saw the hairpinned datagram come from '$from', not $K5_PUBLIC"
lab_udp_send k5h1 "answer"
lab_udp_wait k5h2 "answer" 5 || lab_fail "site k5: host 1's answer did not reach host 2 from $K5_PUBLIC:$PORT"
lab_udp_close k5h1; lab_udp_close k5h2
lab_pass "site k5: hairpin both ways; host 1 saw host 2 as $from"

lab_step "d1: double NAT (home NAT behind a carrier NAT)"
lab_site_double d1
lab_ping "$(lab_site_host d1)" "$PEER_ADDR" 5
lab_pass "site d1: ping $PEER_ADDR answered across both NATs"
expect_stun_public d1 "$(lab_site_host d1)" "$(lab_site_public d1)"
expect_nat d1 "$(lab_site_host d1)" EIM APDF

lab_step "b1: UDP blocked at the router"
lab_site_udp_blocked b1
B1=$(lab_site_host b1)
lab_ping "$B1" "$PEER_ADDR" 5
lab_tcp_start b1tcp "$B1" "$PEER" "$PEER_ADDR" 5003 "$(lab_data_file 2)"
lab_tcp_finish b1tcp 30
lab_stun_mapped "$B1" >/dev/null && lab_fail "site b1: a STUN answer came through a router that blocks UDP"
lab_udp_open b1srv "$PEER" -l -p 5004
lab_udp_once "$B1" 40003 "$PEER_ADDR" 5004 "udp should not pass"
lab_udp_wait b1srv "udp should not pass" 2 && lab_fail "site b1: a UDP datagram reached the peer"
lab_udp_close b1srv
dropped=$(ip netns exec "$(lab_site_router b1)" nft list chain ip knit_lab_nat forward | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
(( ${dropped:-0} > 0 )) || lab_fail "site b1: the router's UDP drop rule counted nothing"
lab_pass "site b1: TCP and ping work; STUN and plain UDP do not ($dropped UDP packets dropped at the router)"

lab_step "teardown"
for site in k1 k2 k3 k4 k5 d1 b1; do lab_site_del "$site"; done
coturn_pid=$LAB_STUN_PID
lab_stun_stop
for label in stun peer core; do lab_ns_del "$label"; done
left=$(ip netns list | awk '{print $1}' | grep -F -- "-$LAB_SFX" || true)
[[ -z "$left" ]] || lab_fail "namespaces left after teardown: $left"
lab__alive "$coturn_pid" && lab_fail "coturn (pid $coturn_pid) still running"
lab_pass "every site, coturn, the peer and the core are gone; no namespace of this run is left"
