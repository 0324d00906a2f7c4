#!/usr/bin/env bash
# Roaming: the client's underlay address changes twice while TCP transfers run through the
# tunnel in both directions; they must complete with matching sha256 sums, and the server's
# `wg show` must follow the client to each new endpoint (the server never had one configured:
# it learns the client's address from authenticated packets, whitepaper §2.1 / §6.5).
#
#   [kn-sN-SFX] server                                     [kn-cN-SFX] client (roams)
#    SERVER_IMPL on wsN-SFX 10.77.0.1/24, udp 51820         CLIENT_IMPL on wcN-SFX 10.77.0.2/24,
#    (peer: client, no endpoint)                            udp 51821 (peer: server at 192.0.2.1:51820)
#                                                           
#    sN0-SFX 192.0.2.1/24 --------- link 1 (veth) --------- cN0-SFX 192.0.2.2/24
#                                                              roam 1: address becomes 192.0.2.3/24
#    sN1-SFX 198.51.100.1/24 ------ link 2 (veth) --------- cN1-SFX 198.51.100.2/24
#                                                              roam 2: link 1 loses its address and
#                                                              goes down; 192.0.2.1 is reached via
#                                                              198.51.100.1 on link 2
#
# wireguard-go as the roamer cannot recover by itself when its source address disappears (it
# pins the source of its replies and drops the pin only on EINVAL, while the kernel answers
# ENETUNREACH), so where wireguard-go roams the test re-sets the server endpoint with `wg set`
# after each move, as a network-change hook would. knitd gets no such help.
#
# Variants (N): 1 = knitd roams, wireguard-go serves; 2 = wireguard-go roams, knitd serves;
# 3 = knitd on both sides. ROAM_VARIANTS="1 3" picks some.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
lab_init ping

MB=${LAB_MB:-24}        # MiB each way
CHUNK_KIB=128           # pacing: 128 KiB every 50 ms, at most 2.5 MiB/s, so >= ~10 s per transfer
CHUNK_DELAY=0.05

roam_variant() {
  local n=$1 client_impl=$2 server_impl=$3
  local S C s0 s1 c0 c1 ws wc f
  lab_step "variant $n: $client_impl roams, $server_impl serves"
  lab_require_impl "$client_impl" "$server_impl"
  lab_ns_add "s$n"; S=$(lab_ns "s$n")
  lab_ns_add "c$n"; C=$(lab_ns "c$n")
  s0=$(lab_name "s${n}0"); s1=$(lab_name "s${n}1")
  c0=$(lab_name "c${n}0"); c1=$(lab_name "c${n}1")
  ws=$(lab_name "ws$n"); wc=$(lab_name "wc$n")
  lab_veth "$S" "$s0" 192.0.2.1/24 "$C" "$c0" 192.0.2.2/24
  lab_veth "$S" "$s1" 198.51.100.1/24 "$C" "$c1" 198.51.100.2/24

  lab_wg_start "$server_impl" "$S" "$ws"
  lab_wg_start "$client_impl" "$C" "$wc"
  lab_wg_setup "$ws" 51820 10.77.0.1/24
  lab_wg_setup "$wc" 51821 10.77.0.2/24
  lab_wg_link "$ws" 192.0.2.1 "$wc" -        # only the client knows where the server is

  lab_ping "$C" 10.77.0.1 10
  lab_wg_check_endpoint "$ws" "$wc" 192.0.2.2:51821

  f=$(lab_data_file "$MB")
  lab_tcp_start "up$n" "$C" "$S" 10.77.0.1 5001 "$f" "$CHUNK_KIB" "$CHUNK_DELAY"
  lab_tcp_start "down$n" "$S" "$C" 10.77.0.2 5002 "$f" "$CHUNK_KIB" "$CHUNK_DELAY"
  lab_log "transfers running: $MB MiB up and $MB MiB down, paced"
  sleep 3
  roam_check_running "$n" "roam 1"

  lab_log "roam 1: client address on link 1 changes 192.0.2.2 -> 192.0.2.3"
  ip -n "$C" addr del 192.0.2.2/24 dev "$c0"
  ip -n "$C" addr add 192.0.2.3/24 dev "$c0"
  roam_nudge "$wc" "$ws"
  lab_wait_for 10 "the server ($server_impl) to show the client's endpoint 192.0.2.3:51821" \
    roam_endpoint_is "$ws" "$wc" 192.0.2.3:51821
  lab_pass "server $ws ($server_impl) follows the client to 192.0.2.3:51821"
  sleep 2
  roam_check_running "$n" "roam 2"

  lab_log "roam 2: link 1 loses its address and goes down; the client reaches 192.0.2.1 over link 2 from 198.51.100.2"
  ip -n "$C" addr flush dev "$c0"
  ip -n "$C" link set "$c0" down
  ip -n "$C" route replace 192.0.2.1/32 via 198.51.100.1 dev "$c1"
  roam_nudge "$wc" "$ws"
  lab_wait_for 10 "the server ($server_impl) to show the client's endpoint 198.51.100.2:51821" \
    roam_endpoint_is "$ws" "$wc" 198.51.100.2:51821
  lab_pass "server $ws ($server_impl) follows the client to 198.51.100.2:51821"

  lab_tcp_finish "up$n" 180
  lab_tcp_finish "down$n" 180
  lab_wg_check_endpoint "$ws" "$wc" 198.51.100.2:51821
  # The client sent to 192.0.2.1; the answers must come from 192.0.2.1 too, although they
  # leave through link 2, whose own address is 198.51.100.1 (NAT.md: a NAT in front of the
  # client would drop answers from another address; reply from the address the packet came to).
  if [[ "$(lab_wg_field "$wc" "$ws" endpoint)" == 198.51.100.1:51820 ]]; then
    lab_fail "the server ($server_impl) answers the client from 198.51.100.1 (the outgoing interface's address), not from 192.0.2.1, the address the client sent to; the client ($client_impl) now shows that as the server's endpoint. Reply from the destination address of the received packet (IP_PKTINFO)."
  fi
  lab_wg_check_endpoint "$wc" "$ws" 192.0.2.1:51820
  lab_ping "$S" 10.77.0.2 5
  lab_ping "$C" 10.77.0.1 5
  lab_pass "variant $n: both transfers survived two roams; pings both ways on the new path"
  lab_wg "$ws" show >&2 || true

  lab_wg_stop "$wc"
  lab_wg_stop "$ws"
  lab_ns_del "s$n"
  lab_ns_del "c$n"
}

roam_nudge() {
  local wc=$1 ws=$2
  if [[ "${LAB_WG_REAL[$wc]}" == wggo ]]; then
    lab_log "(wireguard-go roams: re-setting its endpoint for the server to drop its pinned source)"
    lab_wg "$wc" set peer "$(lab_wg_pubkey "$ws")" endpoint 192.0.2.1:51820
  fi
}

roam_endpoint_is() { [[ "$(lab_wg_field "$1" "$2" endpoint)" == "$3" ]]; }

# The point is to move while data flows: if a transfer already ended, the test proves nothing.
roam_check_running() {
  local n=$1 what=$2 t
  for t in "up$n" "down$n"; do
    lab__alive "${LAB_TCP_SPID[$t]}" \
      || lab_fail "transfer $t had already finished (or failed) before $what; the test must roam mid-transfer"
  done
}

for v in ${ROAM_VARIANTS:-1 2 3}; do
  case "$v" in
    1) roam_variant 1 knitd wggo ;;
    2) roam_variant 2 wggo knitd ;;
    3) roam_variant 3 knitd knitd ;;
    *) lab_fail "unknown variant $v (ROAM_VARIANTS takes 1, 2, 3)" ;;
  esac
done
lab_step "PASS: roaming (variants ${ROAM_VARIANTS:-1 2 3})"
