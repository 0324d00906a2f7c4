#!/usr/bin/env bash
# Traffic through knit-natbox: ping and 20 MiB of TCP each way (sha256 checked) cross it with
# the public address as the only source the outside sees; --udp-timeout 5 ends an idle UDP
# mapping after ~5 s (measured from the natbox's own table, and by packets that stop passing);
# hairpinning (RFC 4787 REQ-9): with --hairpin host 2 reaches host 1 through the public address
# and each sees the other as the EXTERNAL address; without it the packet is refused.
#
#   [kn-n1h1-SFX] host 1 10.1.0.2 --+                                        [kn-core-SFX]
#                                   +-- n1br-SFX 10.1.0.1 [kn-n1r-SFX] n1w-SFX 203.0.113.2/28 -- 203.0.113.14/28
#   [kn-n1h2-SFX] host 2 10.1.0.3 --+   (bridge)  knit-natbox, public 203.0.113.1    192.0.2.14/28
#                                                                                          |
#                                                                     [kn-peer-SFX] 192.0.2.1/28
#
# Runs (each start records the router; each stop checks it is restored exactly):
#   1. EIM/APDF --udp-timeout 5   ping, TCP both ways, UDP timeout
#   2. EIM/EIF                    hairpin refused (counted as hairpin_disabled)
#   3. EIM/EIF --hairpin          hairpin both ways, sources are PUBLIC:port
#   4. site n2, EIM/APDF with the router's own WAN address as the public address (203.0.113.17):
#      ping and TCP out; the router's own ping and pings to that address still work; SIGINT
#      stops it and puts the "lookup local" rule back
# EIF for the hairpin runs, so only hairpinning decides whether host 2's packet gets through.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
lab_init ping nft tcpdump

MB=${LAB_MB:-20}

lab_step "topology: core, a peer in the core, site n1 (2 hosts) behind knit-natbox EIM/APDF --udp-timeout 5"
lab_nat_core
lab_core_host peer
PEER=$(lab_host_ns peer) PEER_ADDR=$(lab_host_addr peer)
lab_site_natbox n1 eim apdf --hosts 2 --udp-timeout 5
H1=$(lab_site_host n1 1) H1_ADDR=$(lab_site_addr n1 1)
H2=$(lab_site_host n1 2) H2_ADDR=$(lab_site_addr n1 2)
PUBLIC=$(lab_site_public n1)
grep -q 'UDP timeout 5 s' "${LAB_NATBOX_LOG[n1]}" || lab_fail "knit-natbox does not say it uses a 5 s UDP timeout"

# ---------------------------------------------------------------------------------------------
lab_step "ping through the natbox; the peer sees only $PUBLIC"
lab_capture_start ping-cap "$PEER" "$(lab_name peer0)" icmp
lab_ping "$H1" "$PEER_ADDR" 5
ip netns exec "$H1" ping -c 3 -i 0.2 -W 1 -n "$PEER_ADDR" >/dev/null || lab_fail "ping $H1_ADDR -> $PEER_ADDR lost packets"
ip netns exec "$H2" ping -c 2 -i 0.2 -W 1 -n "$PEER_ADDR" >/dev/null || lab_fail "ping $H2_ADDR -> $PEER_ADDR lost packets"
lab_capture_stop ping-cap
lines=$(lab_capture_lines ping-cap)
grep -q "IP $PUBLIC > $PEER_ADDR: ICMP echo request" <<<"$lines" || lab_fail "the peer saw no echo request from $PUBLIC: $lines"
grep -q "IP 10\.1\.0\." <<<"$lines" && lab_fail "an inside address reached the peer: $lines"
lab_pass "pings from both hosts answered; the peer saw $(grep -c "IP $PUBLIC > $PEER_ADDR: ICMP echo request" <<<"$lines") echo requests, all from $PUBLIC"

# ---------------------------------------------------------------------------------------------
lab_step "$MB MiB over TCP each way (host 1 <-> peer), sha256 checked"
file=$(lab_data_file "$MB")
lab_capture_start syn-cap "$PEER" "$(lab_name peer0)" 'tcp[tcpflags] & tcp-syn != 0'
lab_tcp_start up "$H1" "$PEER" "$PEER_ADDR" 5001 "$file"
lab_tcp_finish up 120
# Download: the peer serves the file to whoever connects; host 1 connects out.
lab_bg dl-serve "$PEER" timeout 120 sh -c 'exec nc -N -l -s "$1" -p 5002 <"$2"' sh "$PEER_ADDR" "$file"
dl_pid=$LAB_BG_LAST
lab_wait_for 10 "the download listener" lab__listening "$PEER" 5002
t0=${EPOCHREALTIME/./}
ip netns exec "$H1" timeout 120 nc -n -d "$PEER_ADDR" 5002 >"$LAB_DIR/data/download.bin" \
  || lab_fail "download from $PEER_ADDR:5002 failed (status $?)"
us=$(( ${EPOCHREALTIME/./} - t0 ))
lab_bg_wait "$dl_pid" 10
[[ "$(sha256sum <"$file")" == "$(sha256sum <"$LAB_DIR/data/download.bin")" ]] \
  || lab_fail "download: sha256 mismatch ($(stat -c %s "$LAB_DIR/data/download.bin") bytes received)"
lab_pass "TCP down: $MB MiB from $PEER_ADDR to host 1, sha256 matches ($(awk -v us="$us" 'BEGIN{printf "%.1f", us/1e6}') s, ~$(awk -v b="$(stat -c %s "$file")" -v us="$us" 'BEGIN { printf "%.0f", b * 8 / us }') Mbit/s)"
rm -f "$LAB_DIR/data/download.bin"
lab_capture_stop syn-cap
lines=$(lab_capture_lines syn-cap)
grep -q "IP $PUBLIC\.[0-9]* > $PEER_ADDR\.5001: Flags \[S\]" <<<"$lines" || lab_fail "no SYN from $PUBLIC to port 5001 seen at the peer: $lines"
grep -q "IP 10\.1\.0\." <<<"$lines" && lab_fail "an inside address reached the peer: $lines"
lab_pass "the peer saw the connections come from $PUBLIC"

# ---------------------------------------------------------------------------------------------
lab_step "UDP timeout: a mapping idle for 5 s is gone"
lab_udp_open usrv "$PEER" -l -p 5000
lab_udp_open ucli "$H1" -p 40000 "$PEER_ADDR" 5000
lab_udp_send ucli ping1
lab_udp_wait usrv ping1 5 || lab_fail "the peer did not get host 1's datagram from port 40000"
lab_udp_send usrv pong1
lab_udp_wait ucli pong1 5 || lab_fail "host 1 did not get the peer's answer (mapping $PUBLIC:40000)"
row=$(lab_natbox_dump n1 | grep "^udp .*$H1_ADDR:40000 " || true)
[[ -n "$row" ]] || lab_fail "no UDP session for $H1_ADDR:40000 in the natbox's table"
lab_log "natbox table: $row"
sleep 3
lab_udp_send usrv pong2
lab_udp_wait ucli pong2 5 || lab_fail "after 3 s idle the mapping was already gone (host 1 did not get pong2)"
t_last=${EPOCHREALTIME/./}
lab_pass "after 3 s idle the mapping still passes the peer's datagrams (inbound refreshes it, RFC 4787 REQ-6)"
# Watch the table until the session is gone (at most 12 s).
gone_us=""
for ((i = 0; i < 48; i++)); do
  sleep 0.25
  row=$(lab_natbox_dump n1 | grep "^udp .*$H1_ADDR:40000 " || true)
  if [[ -z "$row" ]]; then
    gone_us=$(( ${EPOCHREALTIME/./} - t_last ))
    break
  fi
done
[[ -n "$gone_us" ]] || lab_fail "the UDP session of $H1_ADDR:40000 was still in the table 12 s after its last packet"
gone=$(awk -v us="$gone_us" 'BEGIN { printf "%.2f", us / 1e6 }')
(( gone_us >= 4700000 && gone_us <= 6500000 )) || lab_fail "the UDP session went after ${gone} s idle, expected ~5 s"
lab_pass "the UDP mapping left the natbox's table ${gone} s after its last packet (--udp-timeout 5)"
lab_udp_send usrv pong3
lab_udp_wait ucli pong3 2 && lab_fail "host 1 got a datagram through a mapping that had timed out"
lab_pass "the peer's datagram to the expired mapping $PUBLIC:40000 was dropped"
lab_udp_send ucli ping2
lab_udp_wait usrv ping2 5 || lab_fail "host 1's new datagram did not reach the peer"
lab_udp_send usrv pong4
lab_udp_wait ucli pong4 5 || lab_fail "the new mapping does not pass the peer's answer"
lab_pass "host 1's next datagram opened a new mapping (same external port, port preservation) that works"
lab_udp_close ucli
lab_udp_close usrv

lab_natbox_stop n1
lab_natbox_counters n1 | sed 's/^/    /'
lab_natbox_counters n1 | grep -q 'no_mapping=[1-9]' || lab_fail "the natbox counted no no_mapping drop for the expired mapping"

# ---------------------------------------------------------------------------------------------
# hairpin_round N EXPECT — host 1 opens mapping PUBLIC:40001 and listens on it; host 2 sends to
# PUBLIC:40001 from port 40002. EXPECT=pass: host 1 hears host 2 as PUBLIC:port, and host 2
# hears host 1's answer from PUBLIC:40001 (its socket is connected to that address, so nothing
# else could get in). EXPECT=refused: host 1 hears nothing.
hairpin_round() {
  local n=$1 expect=$2 lines
  lab_udp_once "$H1" 40001 "$PEER_ADDR" 5999 open-mapping
  lab_udp_open "hp1-$n" "$H1" -v -l -p 40001
  lab_capture_start "hp-cap-$n" "$H2" "$(lab_name n1h2)" udp
  lab_udp_open "hp2-$n" "$H2" -p 40002 "$PUBLIC" 40001
  lab_udp_send "hp2-$n" "hello from host 2"
  if [[ "$expect" == refused ]]; then
    lab_udp_wait "hp1-$n" "hello from host 2" 3 && lab_fail "host 1 got host 2's datagram through $PUBLIC without --hairpin"
    lab_capture_stop "hp-cap-$n"
    lab_pass "without --hairpin, host 2's datagram to $PUBLIC:40001 does not reach host 1"
  else
    lab_udp_wait "hp1-$n" "hello from host 2" 5 || lab_fail "host 1 did not get host 2's datagram sent to $PUBLIC:40001"
    local from
    from=$(sed -n 's/^Connection received on \([0-9.]*\) \([0-9]*\)$/\1:\2/p' "$LAB_DIR/logs/udp-hp1-$n.log")
    [[ "${from%:*}" == "$PUBLIC" ]] || lab_fail "host 1 saw host 2's datagram come from '$from', not from $PUBLIC"
    lab_pass "host 2 -> $PUBLIC:40001 reached host 1, which saw it come from $from (the external address)"
    lab_udp_send "hp1-$n" "hello from host 1"
    lab_udp_wait "hp2-$n" "hello from host 1" 5 || lab_fail "host 2 did not get host 1's answer from $PUBLIC:40001"
    lab_capture_stop "hp-cap-$n"
    lines=$(lab_capture_lines "hp-cap-$n")
    grep -q "IP $PUBLIC\.40001 > $H2_ADDR\.40002: UDP" <<<"$lines" || lab_fail "host 2's capture shows no answer from $PUBLIC.40001: $lines"
    grep -q "IP $H1_ADDR\." <<<"$lines" && lab_fail "host 2 saw host 1's inside address: $lines"
    lab_pass "host 1's answer reached host 2 from $PUBLIC:40001 (the external address), never from $H1_ADDR"
  fi
  lab_udp_close "hp2-$n"
  lab_udp_close "hp1-$n"
}

lab_step "hairpinning off (EIM/EIF, no --hairpin): refused"
lab_natbox_start n1 eim eif
hairpin_round 1 refused
lab_natbox_stop n1
lab_natbox_counters n1 | sed 's/^/    /'
lab_natbox_counters n1 | grep -q 'hairpin_disabled=[1-9]' || lab_fail "the natbox counted no hairpin_disabled drop"
lab_natbox_counters n1 | grep -q 'hairpinned 0,' || lab_fail "the natbox hairpinned a packet without --hairpin"

lab_step "hairpinning on (EIM/EIF --hairpin)"
lab_natbox_start n1 eim eif --hairpin
hairpin_round 2 pass
lab_natbox_stop n1
lab_natbox_counters n1 | sed 's/^/    /'
hairpinned=$(lab_natbox_counters n1 | sed -n 's/.*hairpinned \([0-9]*\),.*/\1/p')
(( ${hairpinned:-0} >= 2 )) || lab_fail "the natbox counted ${hairpinned:-no} hairpinned packets, expected at least 2"

# ---------------------------------------------------------------------------------------------
lab_step "site n2: the public address is the router's own WAN address (like a home router)"
lab_site_natbox n2 eim apdf --own-address
N2H=$(lab_site_host n2) N2R=$(lab_site_router n2) N2_PUBLIC=$(lab_site_public n2)
grep -q "$N2_PUBLIC is .*'s own address" "${LAB_NATBOX_LOG[n2]}" || lab_fail "knit-natbox on n2 did not notice that $N2_PUBLIC is the router's own address"
lab_capture_start n2-cap "$PEER" "$(lab_name peer0)" 'icmp or tcp[tcpflags] & tcp-syn != 0'
lab_ping "$N2H" "$PEER_ADDR" 5
lab_tcp_start n2up "$N2H" "$PEER" "$PEER_ADDR" 5005 "$(lab_data_file 5)"
lab_tcp_finish n2up 60
lab_capture_stop n2-cap
lines=$(lab_capture_lines n2-cap)
grep -q "IP $N2_PUBLIC\.[0-9]* > $PEER_ADDR\.5005: Flags \[S\]" <<<"$lines" || lab_fail "site n2: no SYN from $N2_PUBLIC seen at the peer: $lines"
grep -q "IP 10\.2\.0\." <<<"$lines" && lab_fail "site n2: an inside address reached the peer: $lines"
lab_pass "site n2: ping and TCP from the host leave as $N2_PUBLIC"
ip netns exec "$N2R" ping -c 1 -W 2 -n "$PEER_ADDR" >/dev/null || lab_fail "site n2: the router's own ping (from $N2_PUBLIC) fails while knit-natbox runs"
ip netns exec "$PEER" ping -c 1 -W 2 -n "$N2_PUBLIC" >/dev/null || lab_fail "site n2: the router no longer answers pings to its own address $N2_PUBLIC"
lab_pass "site n2: the router's own traffic still works (its ping out, pings to $N2_PUBLIC answered)"
lab_natbox_stop n2 INT
lab_natbox_counters n2 | sed 's/^/    /'
lab_natbox_counters n2 | grep -q 'handed to the router [1-9]' || lab_fail "site n2: knit-natbox handed nothing to the router itself"
lab_pass "ping, TCP both ways, UDP timeout, hairpinning and a router-owned public address all behave through knit-natbox"
