#!/usr/bin/env bash
# knitd <-> knitd carrying IPv6 inside the tunnel, with offloads on (and, as
# netns_knitd_pair_ipv6_no_offloads, forced off by KNIT_OFFLOADS=off).
#
#   [kn-a-SFX]                                           [kn-b-SFX]
#    knitd on wa-SFX                                      knitd on wb-SFX
#    tunnel fd77::1/64, udp 51820                         tunnel fd77::2/64, udp 51821
#        |                                                    |
#    a0-SFX 192.0.2.1/24 ------------- veth ------------- b0-SFX 192.0.2.2/24
#
# Checks: full-size IPv6 pings (DF) both ways; 20 MiB each way over TCP/IPv6 at the same time,
# sha256-checked; and from knitd's own log, the mode it ran in: offloads on means the IPv6
# transfers went through super-packets (TSO6 reads split, segments coalesced before TUN writes),
# forced off means none did.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
lab_init ping nc
lab_require_impl knitd

lab_ns_add a; A=$(lab_ns a)
lab_ns_add b; B=$(lab_ns b)
WA=$(lab_name wa); WB=$(lab_name wb)
lab_veth "$A" "$(lab_name a0)" 192.0.2.1/24 "$B" "$(lab_name b0)" 192.0.2.2/24
lab_ping "$A" 192.0.2.2 5

lab_step "knitd pair with IPv6 tunnel addresses (KNIT_OFFLOADS=${KNIT_OFFLOADS:-on})"
lab_wg_start knitd "$A" "$WA"
lab_wg_start knitd "$B" "$WB"
lab_wg_setup "$WA" 51820 fd77::1/64
lab_wg_setup "$WB" 51821 fd77::2/64
lab_wg_add_peer "$WA" "$WB" fd77::2/128 192.0.2.2:51821
lab_wg_add_peer "$WB" "$WA" fd77::1/128 192.0.2.1:51820
lab_ping "$A" fd77::2 10
lab_ping "$B" fd77::1 10
# 1420 - 40 (IPv6) - 8 (ICMPv6) = 1372 bytes of payload fill the tunnel MTU exactly.
lab_ping "$A" fd77::2 5 -M do -s 1372
lab_ping "$B" fd77::1 5 -M do -s 1372
lab_pass "IPv6 pings both ways, full-size with DF"

lab_step "20 MiB each way over TCP/IPv6 through the tunnel"
lab_tcp_exchange "$A" fd77::1 "$B" fd77::2 "${LAB_MB:-20}"
lab_wg_check_counters "$WA" "$WB" "${LAB_MB:-20}"
lab_wg_check_counters "$WB" "$WA" "${LAB_MB:-20}"

lab_check_offloads
lab_step "PASS: knitd <-> knitd over IPv6"
