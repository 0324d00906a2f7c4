#!/usr/bin/env bash
# Fault: a WireGuard handshake flood at knitd. An attacker sends 3000 initiations a second with
# a valid mac1 for knitd's key (so none is dropped as noise) for 20 s; knitd must notice it is
# under load and answer with cookie replies instead of doing Diffie-Hellman for each (whitepaper
# §5.3), and a legitimate peer that starts its first handshake in the middle of the flood must
# still complete it (it gets a cookie reply, retries with mac2, and is let through).
#
#   [kn-a-SFX] knitd wa 10.77.0.1 (udp 51820) 192.0.2.1 ---+
#                                                           +-- [kn-core-SFX]
#   [kn-b-SFX] knitd wb 10.77.0.2 (udp 51821) 192.0.2.17 --+         |
#                                             [kn-atk-SFX] wg_flood 192.0.2.33
#
# Prints the cookie replies the attacker received and how long the legitimate handshake took.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
lab_init ping
lab_require_impl knitd
TOOLS=${KNIT_TEST_TOOLS:-$(dirname "$KNIT_BIN")/tests/tools}
[[ -x "$TOOLS/wg_flood" ]] || lab_fail "wg_flood not found in $TOOLS (build the tests)"
RATE=${LAB_FLOOD_RATE:-3000}
SECONDS_FLOOD=20

lab_step "topology: knitd a and b (plain WireGuard, configured with wg) and an attacker on the core"
lab_nat_core
lab_core_host a
lab_core_host b
lab_core_host atk
A=$(lab_host_ns a) B=$(lab_host_ns b)
WA=$(lab_name wa) WB=$(lab_name wb)
lab_wg_start knitd "$A" "$WA"
lab_wg_start knitd "$B" "$WB"
lab_wg_setup "$WA" 51820 10.77.0.1/24
lab_wg_setup "$WB" 51821 10.77.0.2/24
lab_wg_link "$WA" "$(lab_host_addr a)" "$WB" "$(lab_host_addr b)"
lab__has_handshake "$WA" "$WB" && lab_fail "a handshake before any traffic"

lab_step "flood: $RATE initiations/s with a valid mac1 at $WA for ${SECONDS_FLOOD} s"
lab_bg flood "$(lab_host_ns atk)" "$TOOLS/wg_flood" --target "$(lab_host_addr a):51820" \
  --public-key "$(lab_wg_pubkey "$WA")" --rate "$RATE" --seconds "$SECONDS_FLOOD"
FLOOD=$LAB_BG_LAST
sleep 3

lab_step "b starts its first handshake with a in the middle of the flood"
t0=$(date +%s%N)
lab_poll 15 ip netns exec "$B" ping -c 1 -W 1 -n 10.77.0.1 \
  || lab_fail "b's handshake with a did not complete within 15 s of the flood (handshake: $(lab_wg_field "$WB" "$WA" latest-handshake))"
hs_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
lab_wg_wait_handshake "$WA" "$WB" 2
lab__alive "$FLOOD" || lab_fail "the flood ended before b's handshake: the test proves nothing"
lab_pass "b completed its handshake with a and pinged through the tunnel ${hs_ms} ms after starting, under the flood"

lab_bg_wait "$FLOOD" $(( SECONDS_FLOOD + 10 ))
line=$(grep '^wg_flood: sent' "$LAB_DIR/logs/flood.log") || lab_fail "wg_flood printed no result: $(cat "$LAB_DIR/logs/flood.log")"
lab_log "$line"
cookies=$(sed -n 's/.* received \([0-9]*\) cookie replies.*/\1/p' <<<"$line")
responses=$(sed -n 's/.* cookie replies, \([0-9]*\) responses.*/\1/p' <<<"$line")
(( cookies > 0 )) || lab_fail "knitd sent no cookie reply to a flood of $RATE initiations/s: $line"
(( responses == 0 )) || lab_fail "knitd answered $responses of the flood's forged initiations with a response: $line"
lab_ping "$A" 10.77.0.2 5
lab_pass "handshake flood: $cookies cookie replies (cookies engaged), legitimate handshake in ${hs_ms} ms"
