#!/usr/bin/env bash
# knit-natbox behaves as the NAT type it is told to be: for each of the 9 RFC 4787 mapping x
# filtering combinations, an independent RFC 5780 client (coturn's turnutils_natdiscovery -m -f)
# on a host behind the natbox, talking to coturn on two addresses in the core, must report
# exactly the configured mapping and filtering. knit-natbox is restarted for every combination
# and must leave the router exactly as it found it each time.
#
#   [kn-n1h1-SFX] host                         [kn-n1r-SFX] router: knit-natbox         [kn-core-SFX]
#    n1h1-SFX 10.1.0.2/24 ---- n1br-SFX 10.1.0.1/24 (bridge)   n1w-SFX 203.0.113.2/28 ---- n1x-SFX 203.0.113.14/28
#                              public address 203.0.113.1 (proxy ARP)                     stunc-SFX 198.51.100.254/24
#                                                                                                |
#                                                           [kn-stun-SFX] coturn: A 198.51.100.1, B 198.51.100.2
#                                                                          ports 3478 and 3479 (RFC 5780)
#
# RFC 5780 §4.3 mapping test: A:3478 -> X1, B:3478 -> X2 (X1 = X2: EIM), B:3479 -> X3 (X2 = X3:
# ADM, else APDM). §4.4 filtering test: answer from B:3479 requested (arrives: EIF), then from
# A:3479 (arrives: ADF, else APDF).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
lab_init ping nft turnserver turnutils_natdiscovery

lab_step "topology: core, coturn on two addresses, one site behind knit-natbox"
lab_nat_core
lab_stun_start
lab_site_natbox n1 eim eif
H=$(lab_site_host n1)
PUBLIC=$(lab_site_public n1)
lab_ping "$H" "$LAB_STUN_A" 5
lab_pass "host $(lab_site_addr n1) reaches coturn at $LAB_STUN_A through knit-natbox"
lab_natbox_stop n1

declare -A ROW=()
failures=0
for mapping in eim adm apdm; do
  for filtering in eif adf apdf; do
    want_m=${mapping^^} want_f=${filtering^^}
    lab_step "knit-natbox --mapping $mapping --filtering $filtering"
    lab_natbox_start n1 "$mapping" "$filtering"
    lab_nat_discover "natdiscovery-$mapping-$filtering" "$H"
    lab_natbox_stop n1
    verdict=ok
    [[ "$LAB_NAT_MAPPING" == "$want_m" && "$LAB_NAT_FILTERING" == "$want_f" ]] || verdict=WRONG
    # Every reflexive address must be the natbox's public address.
    for x in "${LAB_NAT_REFLEXIVE[@]}"; do
      [[ "${x%:*}" == "$PUBLIC" ]] || verdict="WRONG (reflexive $x)"
    done
    (( ${#LAB_NAT_REFLEXIVE[@]} >= 2 )) || verdict="WRONG (only ${#LAB_NAT_REFLEXIVE[@]} mapping answers)"
    ROW[$mapping-$filtering]=$(printf '%-5s %-5s | %-5s %-5s | %-53s | %5ss | %s' \
      "$want_m" "$want_f" "$LAB_NAT_MAPPING" "$LAB_NAT_FILTERING" "${LAB_NAT_REFLEXIVE[*]}" "$LAB_NAT_SECONDS" "$verdict")
    if [[ "$verdict" == ok ]]; then
      lab_pass "natdiscovery says $LAB_NAT_MAPPING/$LAB_NAT_FILTERING (${LAB_NAT_SECONDS} s)"
    else
      lab_log "MISMATCH: configured $want_m/$want_f, natdiscovery says $LAB_NAT_MAPPING/$LAB_NAT_FILTERING; $verdict"
      sed 's/^/    /' "$LAB_DIR/logs/natdiscovery-$mapping-$filtering.log" >&2
      failures=$(( failures + 1 ))
    fi
  done
done

lab_step "classification of knit-natbox by turnutils_natdiscovery (RFC 5780)"
printf '%-11s | %-11s | %-53s | %6s | %s\n' "configured" "reported" "mapping test: reflexive from A:3478, B:3478[, B:3479]" "time" "result"
printf -- "%s\n" "------------+-------------+-$(printf "%.0s-" {1..53})-+--------+-------"
for mapping in eim adm apdm; do
  for filtering in eif adf apdf; do
    printf '%s\n' "${ROW[$mapping-$filtering]}"
  done
done
(( failures == 0 )) || lab_fail "$failures of 9 combinations were not reported as configured"
lab_pass "all 9 mapping x filtering combinations reported exactly as configured"
