#!/usr/bin/env bash
# knitd <-> knitd, configured only through `wg`.
#
#   [kn-a-SFX]                                           [kn-b-SFX]
#    knitd on wa-SFX                                      knitd on wb-SFX
#    tunnel 10.77.0.1/24, udp 51820                       tunnel 10.77.0.2/24, udp 51821
#        |                                                    |
#    a0-SFX 192.0.2.1/24 ------------- veth ------------- b0-SFX 192.0.2.2/24
#
# The same checks as wg_interop_test.sh (lab_pair_suite in tests/lab/lib.sh) with knitd on both
# sides: each side initiates in turn (proven by captures), pings, 50 MiB each way with sha256,
# `wg show` handshakes and counters, `wg showconf` and `wg setconf` round-trip, clean SIGTERM.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
lab_init
lab_pair_suite knitd knitd "${LAB_MB:-50}"
# The offload mode each knitd ran in, from its own log: forced off by KNIT_OFFLOADS=off (the
# netns_*_no_offloads tests), else on, and then the transfers went through super-packets (TSO
# reads split, segments coalesced before TUN writes; the counters of the shutdown line).
lab_check_offloads
lab_step "PASS: knitd <-> knitd"
