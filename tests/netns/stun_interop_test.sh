#!/usr/bin/env bash
# STUN interop, both ways:
#   * knit-stun (2 addresses x 2 ports) answers independent clients: Debian's `stun` (RFC 3489),
#     coturn's turnutils_stunclient, and turnutils_natdiscovery, which must classify the NAT in
#     front of it correctly (knit-natbox of several types, and the kernel masquerade recipes).
#   * Knit's client (tests/tools/stun_probe: NatProbe) against coturn's turnserver and against
#     knit-stun reports the right public address, mapping and filtering.
#
#   [kn-pub-SFX] public host 192.0.2.1 ----+
#                                          |
#   [kn-n1h1-SFX] 10.1.0.2 -- [kn-n1r-SFX] knit-natbox, public 203.0.113.1 --+
#   [kn-k1h1-SFX] 10.2.0.2 -- [kn-k1r-SFX] masquerade, public 203.0.113.17 --+-- [kn-core-SFX]
#   [kn-k2h1-SFX] 10.3.0.2 -- [kn-k2r-SFX] masquerade random, 203.0.113.33 --+        |
#                                                                    stunc-SFX 198.51.100.254/24
#                                                                                     |
#        [kn-stun-SFX] coturn:     A 198.51.100.1,  B 198.51.100.2   (ports 3478, 3479)
#                      knit-stun:  A 198.51.100.11, B 198.51.100.12  (ports 3478, 3479)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
lab_init ping nft turnserver turnutils_stunclient turnutils_natdiscovery stun

TOOLS=${KNIT_TEST_TOOLS:-$KNIT_BIN/../tests/tools}
[[ -x "$KNIT_BIN/knit-stun" ]] || lab_fail "knit-stun not found at $KNIT_BIN/knit-stun"
[[ -x "$TOOLS/stun_probe" ]] || lab_fail "stun_probe not found at $TOOLS/stun_probe (set KNIT_TEST_TOOLS)"
KA=198.51.100.11 KB=198.51.100.12
COTURN_A=$LAB_STUN_A

lab_step "topology: core, coturn and knit-stun on two addresses each"
lab_nat_core
lab_stun_start
lab_addr "$LAB_STUN_NS" "$(lab_name stun)" "$KA/24"
lab_addr "$LAB_STUN_NS" "$(lab_name stun)" "$KB/24"
lab_bg knit-stun "$LAB_STUN_NS" "$KNIT_BIN/knit-stun" --listen "$KA:3478" --alt-ip "$KB" --alt-port 3479 --log-level debug
KSTUN_PID=$LAB_BG_LAST
knit_stun_ready() { (( $(ip netns exec "$LAB_STUN_NS" ss -Hlun | grep -cE "($KA|$KB):(3478|3479) ") >= 4 )); }
lab_wait_for 10 "knit-stun listening on $KA and $KB, ports 3478 and 3479" knit_stun_ready
lab_core_host pub
PUB_NS=$(lab_host_ns pub) PUB_ADDR=$(lab_host_addr pub)
lab_site_natbox n1 eim eif
lab_site_kernel k1 port-restricted
lab_site_kernel k2 symmetric
lab_ping "$PUB_NS" "$KA" 5

# ---------------------------------------------------------------------------------------------
lab_step "independent clients against knit-stun"

# Debian's stun (RFC 3489, no cookie; it also tests CHANGE-REQUEST from a second port).
check_stun_client() {  # NS EXPECTED_IP LABEL
  local out
  out=$(ip netns exec "$1" timeout 20 stun "$KA" -v 2>&1 || true)
  grep -q 'problem parsing' <<<"$out" && lab_fail "stun ($3): could not parse knit-stun's answer: $out"
  grep -q "MappedAddress = $2:" <<<"$out" || lab_fail "stun ($3): no MappedAddress $2 in: $out"
  grep -q "ChangedAddress = $KB:3479" <<<"$out" || lab_fail "stun ($3): no ChangedAddress $KB:3479 in: $out"
  lab_pass "stun (RFC 3489) from $3: mapped $2, changed address $KB:3479; verdict: $(grep -m1 '^Primary' <<<"$out")"
}
check_stun_client "$PUB_NS" "$PUB_ADDR" "public host"
check_stun_client "$(lab_site_host k1)" "$(lab_site_public k1)" "behind masquerade"

# coturn's turnutils_stunclient (RFC 5389 + RFC 5780 requests).
got=$(lab_stun_mapped "$PUB_NS" "$KA") || lab_fail "turnutils_stunclient got no answer from knit-stun"
[[ "${got%:*}" == "$PUB_ADDR" ]] || lab_fail "turnutils_stunclient: reflexive $got, expected $PUB_ADDR:*"
lab_pass "turnutils_stunclient from the public host: reflexive $got"
out=$(ip netns exec "$PUB_NS" timeout 20 turnutils_stunclient -f "$KA" 2>&1 || true)
grep -q "Response origin: : $KB:3479" <<<"$out" || lab_fail "turnutils_stunclient -f: no answer from $KB:3479 (change IP+port): $out"
lab_pass "turnutils_stunclient -f: CHANGE-REQUEST answered from $KB:3479"

# turnutils_natdiscovery against knit-stun, behind each kind of NAT.
declare -a TABLE=()
discover() {  # NAME NS WANT_M WANT_F PUBLIC
  local save=$LAB_STUN_A
  LAB_STUN_A=$KA
  lab_nat_discover "$1" "$2"
  LAB_STUN_A=$save
  local verdict=ok x
  [[ "$LAB_NAT_MAPPING" == "$3" && "$LAB_NAT_FILTERING" == "$4" ]] || verdict=WRONG
  for x in "${LAB_NAT_REFLEXIVE[@]}"; do [[ "${x%:*}" == "$5" ]] || verdict="WRONG (reflexive $x)"; done
  (( ${#LAB_NAT_REFLEXIVE[@]} >= 2 )) || verdict="WRONG (${#LAB_NAT_REFLEXIVE[@]} mapping answers)"
  TABLE+=("$(printf '%-22s natdiscovery -> knit-stun  | want %-4s %-4s | got %-7s %-7s | %s' "$1" "$3" "$4" "$LAB_NAT_MAPPING" "$LAB_NAT_FILTERING" "$verdict")")
  [[ "$verdict" == ok ]] || { sed 's/^/    /' "$LAB_DIR/logs/$1.log" >&2; lab_fail "natdiscovery via knit-stun ($1): wanted $3/$4, got $LAB_NAT_MAPPING/$LAB_NAT_FILTERING; $verdict"; }
  lab_pass "natdiscovery via knit-stun ($1): $LAB_NAT_MAPPING/$LAB_NAT_FILTERING in ${LAB_NAT_SECONDS} s"
}

# Knit's client: stun_probe (NatProbe) against a server.
probe() {  # NAME NS SERVER WANT_M WANT_F PUBLIC_IP
  local json m f pub udp
  json=$(ip netns exec "$2" timeout 30 "$TOOLS/stun_probe" --server "$3:3478") || lab_fail "stun_probe ($1) failed"
  printf '%s\n' "$json" >"$LAB_DIR/logs/probe-$1.log"
  udp=$(jq -r .udp <<<"$json"); m=$(jq -r .mapping <<<"$json"); f=$(jq -r .filtering <<<"$json")
  pub=$(jq -r .public_v4 <<<"$json")
  local verdict=ok
  [[ "$udp" == true && "$m" == "$4" && "$f" == "$5" && "${pub%:*}" == "$6" ]] || verdict=WRONG
  TABLE+=("$(printf '%-22s stun_probe -> %-12s | want %-4s %-4s | got %-7s %-7s | %s, %s ms' "$1" "$([[ $3 == "$KA" ]] && echo knit-stun || echo coturn)" "$4" "$5" "$m" "$f" "$pub" "$(jq -r '.elapsed_ms|floor' <<<"$json")")")
  [[ "$verdict" == ok ]] || lab_fail "stun_probe ($1) against $3: wanted $4/$5 public $6, got: $json"
  lab_pass "stun_probe ($1) against $3: public $pub, $m/$f, rtt $(jq -r '.servers[0].rtt_ms' <<<"$json") ms, $(jq -r '.elapsed_ms|floor' <<<"$json") ms"
}

lab_require_tools jq
lab_step "the public host (no NAT)"
discover public "$PUB_NS" EIM EIF "$PUB_ADDR"
probe public "$PUB_NS" "$COTURN_A" EIM EIF "$PUB_ADDR"
probe public-k "$PUB_NS" "$KA" EIM EIF "$PUB_ADDR"

lab_step "kernel masquerade (port-restricted cone)"
discover masquerade "$(lab_site_host k1)" EIM APDF "$(lab_site_public k1)"
probe masquerade "$(lab_site_host k1)" "$COTURN_A" EIM APDF "$(lab_site_public k1)"
probe masquerade-k "$(lab_site_host k1)" "$KA" EIM APDF "$(lab_site_public k1)"

lab_step "kernel masquerade random (symmetric)"
discover masq-random "$(lab_site_host k2)" APDM APDF "$(lab_site_public k2)"
probe masq-random "$(lab_site_host k2)" "$COTURN_A" APDM APDF "$(lab_site_public k2)"
probe masq-random-k "$(lab_site_host k2)" "$KA" APDM APDF "$(lab_site_public k2)"

H=$(lab_site_host n1) P=$(lab_site_public n1)
first=1
for combo in eim:eif eim:adf adm:apdf apdm:adf; do
  mapping=${combo%:*} filtering=${combo#*:}
  lab_step "knit-natbox $mapping/$filtering"
  if (( ! first )); then lab_natbox_start n1 "$mapping" "$filtering"; fi
  first=0
  discover "natbox-$mapping-$filtering" "$H" "${mapping^^}" "${filtering^^}" "$P"
  probe "natbox-$mapping-$filtering" "$H" "$COTURN_A" "${mapping^^}" "${filtering^^}" "$P"
  probe "natbox-$mapping-$filtering-k" "$H" "$KA" "${mapping^^}" "${filtering^^}" "$P"
  lab_natbox_stop n1
done

lab_step "Knit's single binding transaction against coturn: FINGERPRINT, RTT, CHANGE-REQUEST"
json=$(ip netns exec "$PUB_NS" timeout 10 "$TOOLS/stun_probe" --binding --server "$COTURN_A:3478")
[[ $(jq -r .outcome <<<"$json") == success && $(jq -r .mapped <<<"$json") == "$PUB_ADDR:"* ]] || lab_fail "binding against coturn: $json"
lab_pass "binding against coturn: mapped $(jq -r .mapped <<<"$json"), other $(jq -r .other_address <<<"$json"), fingerprint $(jq -r .fingerprint <<<"$json"), rtt $(jq -r .rtt_ms <<<"$json") ms"
json=$(ip netns exec "$PUB_NS" timeout 10 "$TOOLS/stun_probe" --binding --change 6 --server "$KA:3478")
[[ $(jq -r .responder <<<"$json") == "$KB:3479" && $(jq -r .response_origin <<<"$json") == "$KB:3479" ]] || lab_fail "CHANGE-REQUEST to knit-stun: $json"
lab_pass "CHANGE-REQUEST ip+port to knit-stun answered from $KB:3479"

lab_step "knit-stun shuts down on SIGTERM and reports its counters"
lab__reap "$KSTUN_PID" 5 TERM
(( LAB_REAP_FORCED == 0 && LAB_REAP_RC == 0 )) || lab_fail "knit-stun did not exit cleanly (status $LAB_REAP_RC)"
grep '^knit-stun: ' "$LAB_DIR/logs/knit-stun.log" | sed 's/^/    /'
grep -q '^knit-stun: received [1-9]' "$LAB_DIR/logs/knit-stun.log" || lab_fail "knit-stun printed no counters"

printf '\n%s\n' "NAT classification (client -> server | configured | reported):"
printf '  %s\n' "${TABLE[@]}"
lab_pass "STUN interop: knit-stun with stun, turnutils_stunclient, turnutils_natdiscovery; stun_probe with coturn and knit-stun"
