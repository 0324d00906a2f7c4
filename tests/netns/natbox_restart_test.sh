#!/usr/bin/env bash
# knit-natbox started again and again in the same router namespace: every start must work like
# the first. Each run is stopped with SIGTERM (and must restore the router exactly, which
# lab_natbox_stop checks); between runs the hosts keep talking to coturn, as the STUN tests do.
# Each run checks both directions: a STUN answer from coturn (mapped to the public address),
# ping and 1 MiB of TCP to a peer, and the natbox's own count of inbound packets it forwarded.
#
#   [kn-n1h1-SFX] 10.1.0.2 -- n1br-SFX 10.1.0.1 [kn-n1r-SFX] n1w-SFX 203.0.113.2/28 ----+
#                             knit-natbox, public 203.0.113.1 (proxy ARP)                  |
#   [kn-n2h1-SFX] 10.2.0.2 -- n2br-SFX 10.2.0.1 [kn-n2r-SFX] n2w-SFX 203.0.113.17/28 ---+ [kn-core-SFX]
#                             knit-natbox, public = the router's own address (local mode) |   |
#   [kn-peer-SFX] 192.0.2.1/28 ------------------------------------------------------------+   |
#   [kn-stun-SFX] coturn 198.51.100.1, .2 (3478/3479) ------------------------------------------+
#
# Site n1 runs RUNS (LAB_RESTARTS) times (default 3: EIM/APDF, APDM/APDF, EIM/EIF, ...); site n2 (local mode,
# where the "lookup local" rule moves) RUNS times too. Between two runs a STUN client keeps
# sending from the host, so the router sees that flow with and without the natbox.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
lab_init ping nft turnserver turnutils_stunclient

RUNS=${LAB_RESTARTS:-3}
MODES=(eim:apdf apdm:apdf eim:eif adm:adf eim:apdf)

lab_step "topology: core, coturn, a peer, site n1 (proxy ARP) and site n2 (own address)"
lab_nat_core
lab_stun_start
lab_core_host peer
PEER=$(lab_host_ns peer) PEER_ADDR=$(lab_host_addr peer)
lab_site_natbox n1 eim apdf
lab_natbox_stop n1
lab_site_natbox n2 eim apdf --own-address
lab_natbox_stop n2
FILE=$(lab_data_file 1)

# inbound_forwarded SITE — what the last run's counters say it forwarded inbound.
inbound_forwarded() {
  lab_natbox_counters "$1" | sed -n 's/.*; inbound [0-9]* (forwarded \([0-9]*\),.*/\1/p'
}

# one_run SITE RUN MAPPING FILTERING [flags] — start, check both directions, stop, check counters.
one_run() {
  local site=$1 run=$2 mapping=$3 filtering=$4 host public mapped t0 ms fwd
  shift 4
  host=$(lab_site_host "$site") public=$(lab_site_public "$site")
  lab_step "site $site, run $run: knit-natbox $mapping/$filtering $*"
  t0=${EPOCHREALTIME/./}
  lab_natbox_start "$site" "$mapping" "$filtering" "$@"
  mapped=$(lab_stun_mapped "$host") || lab_fail "site $site run $run: no STUN answer from coturn through knit-natbox (inbound dead?)"
  [[ "${mapped%:*}" == "$public" ]] || lab_fail "site $site run $run: coturn saw $mapped, not $public"
  ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
  lab_pass "site $site run $run: STUN answer from coturn, mapped $mapped (${ms} ms after start)"
  lab_ping "$host" "$PEER_ADDR" 5
  lab_tcp_start "tcp-$site-$run" "$host" "$PEER" "$PEER_ADDR" $(( 5100 + run )) "$FILE"
  lab_tcp_finish "tcp-$site-$run" 60
  lab_natbox_stop "$site"
  fwd=$(inbound_forwarded "$site")
  (( ${fwd:-0} > 0 )) || { lab_natbox_counters "$site" >&2; lab_fail "site $site run $run: knit-natbox forwarded no inbound packet"; }
  lab_pass "site $site run $run: inbound forwarded $fwd packets; router restored"
  # Between runs: the host's STUN client keeps going while no natbox runs (its packets leave
  # untranslated and get no answer), as the lab's STUN tests do.
  ip netns exec "$host" timeout 3 turnutils_stunclient "$LAB_STUN_A" >/dev/null 2>&1 || true
}

for ((run = 1; run <= RUNS; run++)); do
  m=${MODES[$(( (run - 1) % ${#MODES[@]} ))]}
  one_run n1 "$run" "${m%:*}" "${m#*:}"
done
for ((run = 1; run <= RUNS; run++)); do
  m=${MODES[$(( (run - 1) % ${#MODES[@]} ))]}
  one_run n2 "$run" "${m%:*}" "${m#*:}"
done
lab_pass "knit-natbox restarted $RUNS times on each site: every run forwarded both ways"
