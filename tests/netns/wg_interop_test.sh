#!/usr/bin/env bash
# knitd <-> wireguard-go interop, configured only through `wg`.
#
#   [kn-a-SFX]                                           [kn-b-SFX]
#    knitd on wa-SFX                                      wireguard-go on wb-SFX
#    tunnel 10.77.0.1/24, udp 51820                       tunnel 10.77.0.2/24, udp 51821
#        |                                                    |
#    a0-SFX 192.0.2.1/24 ------------- veth ------------- b0-SFX 192.0.2.2/24
#
# Round 1: knitd sends the first packet, so it initiates the handshake (proven by captures on
# both veth ends); pings both ways, full-size pings. Both daemons are stopped with SIGTERM (their
# sockets and TUNs must go) and restarted. Round 2: wireguard-go sends first and initiates;
# 50 MiB of random data each way over TCP (sha256 compared); `wg show` handshakes and transfer
# counters; `wg showconf` reproduces the configuration and round-trips through `wg setconf`.
# The checks live in lab_pair_suite (tests/lab/lib.sh), shared with knitd_pair_test.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
lab_init
lab_pair_suite knitd wggo "${LAB_MB:-50}"
# The offload mode each knitd ran in, from its own log: forced off by KNIT_OFFLOADS=off (the
# netns_*_no_offloads tests), else on, and then the transfers went through super-packets (TSO
# reads split, segments coalesced before TUN writes; the counters of the shutdown line).
lab_check_offloads
lab_step "PASS: knitd <-> wireguard-go interop"
