#!/usr/bin/env bash
# Port mapping against a real home router: miniupnpd (Debian's miniupnpd-nftables) in a lab
# router namespace that also masquerades its LAN. A host behind it asks for a UDP mapping with
# Knit's PortMapper (tests/tools/portmap_probe) by PCP, by NAT-PMP and by UPnP IGD in turn; for
# each: the answer names the router's public address and a port, a datagram sent from the
# internet to that public endpoint reaches the host's port, and after the probe deletes the
# mapping the same datagram no longer does. Also: the availability probe (netcheck) sees all
# three protocols, and a gateway with no server fails fast with a clear reason.
#
#   [kn-inet-SFX] 100.130.0.2 ----- 100.130.0.1 [kn-rtr-SFX] 192.168.77.1 ----- 192.168.77.2 [kn-host-SFX]
#    "the internet"          pmw-SFX     miniupnpd (PCP, NAT-PMP      pml-SFX   portmap_probe,
#                                        on :5351; UPnP on :5000;              nc listening
#                                        nft tables knitupnp_SFX),
#                                        masquerade out pmw-SFX
#
# The WAN uses 100.130.0.0/24 on purpose: miniupnpd refuses to map ports when its external
# address is private or reserved (RFC 1918, 100.64/10, the RFC 5737 TEST-NETs, 198.18/15), and
# these namespaces reach nothing outside themselves.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"

MINIUPNPD=${MINIUPNPD:-/usr/sbin/miniupnpd}
[[ -x "$MINIUPNPD" ]] || lab_skip "miniupnpd not installed (Debian package miniupnpd-nftables; scripts/setup.sh installs it)"
lab_init nft ss

TOOLS=${KNIT_TEST_TOOLS:-$KNIT_BIN/../tests/tools}
PROBE=$TOOLS/portmap_probe
[[ -x "$PROBE" ]] || lab_fail "portmap_probe not found at $PROBE (build it, or set KNIT_TEST_TOOLS)"

PUBLIC=100.130.0.1 INET_ADDR=100.130.0.2 LAN_GW=192.168.77.1 HOST_ADDR=192.168.77.2
TABLE=knitupnp_$LAB_SFX

lab_step "topology: internet, router (masquerade + miniupnpd), host"
lab_ns_add inet
lab_router_add rtr
lab_ns_add host
INET=$(lab_ns inet) RTR=$(lab_ns rtr) HOST=$(lab_ns host)
WAN=$(lab_name pmw) LAN=$(lab_name pml)
lab_veth "$RTR" "$WAN" "$PUBLIC/24" "$INET" "$(lab_name pmi)" "$INET_ADDR/24"
lab_uplink "$HOST" "$(lab_name pmh)" "$HOST_ADDR/24" "$RTR" "$LAN" "$LAN_GW/24"
lab_masquerade "$RTR" "$WAN"
lab_ping "$HOST" "$INET_ADDR" 5 || lab_fail "host cannot reach the internet through the router"
lab_pass "host reaches $INET_ADDR through the masquerading router"

# miniupnpd's nftables backend adds its rules to chains it expects to exist (Debian's
# nft_init.sh would create them in table "filter"): our own table, named for this run.
lab_nft "$RTR" <<NFT
table inet $TABLE {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
NFT

MDIR=$LAB_DIR/miniupnpd
mkdir -p "$MDIR"
cat >"$MDIR/miniupnpd.conf" <<CONF
ext_ifname=$WAN
listening_ip=$LAN
http_port=5000
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
lease_file=$MDIR/leases
uuid=00000000-0000-4000-8000-$(printf '%06x' "0x$LAB_SFX")000000
min_lifetime=120
max_lifetime=86400
notify_interval=60
upnp_table_name=$TABLE
upnp_nat_table_name=$TABLE
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 192.168.77.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF

cleanup_miniupnpd() {
  # miniupnpd is a lab_bg helper (killed by lib.sh); its files live in $LAB_DIR. Empty and
  # delete its table here so nothing of it outlives the run even if the namespace were kept.
  ip netns exec "$RTR" nft delete table inet "$TABLE" 2>/dev/null || true
  rm -f "$MDIR/leases" "$MDIR/miniupnpd.pid"
}

lab_step "miniupnpd $("$MINIUPNPD" --version 2>&1 | head -1)"
lab_bg miniupnpd "$RTR" "$MINIUPNPD" -d -f "$MDIR/miniupnpd.conf" -P "$MDIR/miniupnpd.pid"
MINIUPNPD_PID=$LAB_BG_LAST
miniupnpd_ready() {
  [[ -n "$(ip netns exec "$RTR" ss -Hlun "sport = :5351")" ]] &&
    [[ -n "$(ip netns exec "$RTR" ss -Hltn "sport = :5000")" ]]
}
lab_wait_for 10 "miniupnpd listening on UDP 5351 and TCP 5000" miniupnpd_ready
lab_pass "miniupnpd up (pid $MINIUPNPD_PID)"

# json FILE KEY — one field of the first JSON line in FILE.
json() { head -1 "$1" | jq -r ".$2"; }

# rule_for PORT — does miniupnpd have a redirect for PORT in its table right now?
# (The listing is read whole: grep -q closing the pipe early would fail it under pipefail.)
rule_for() {
  local rules
  rules=$(ip netns exec "$RTR" nft list chain inet "$TABLE" prerouting_miniupnpd 2>/dev/null) || return 1
  grep -q "dport $1 " <<<"$rules"
}
no_rule_for() { ! rule_for "$1"; }

lab_step "availability probe (netcheck): which protocols does the gateway speak?"
out=$LAB_DIR/state/available.json
t0=${EPOCHREALTIME/./}
ip netns exec "$HOST" "$PROBE" --available >"$out" 2>"$LAB_DIR/logs/available.log" || lab_fail "portmap_probe --available failed: $(cat "$out")"
ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
[[ "$(json "$out" gateway)" == "$LAN_GW" ]] || lab_fail "gateway from /proc/net/route: $(cat "$out")"
for p in pcp natpmp upnp; do
  [[ "$(json "$out" $p)" == true ]] || lab_fail "$p not available: $(cat "$out")"
done
[[ "$(json "$out" external_address)" == "$PUBLIC" ]] || lab_fail "external address: $(cat "$out")"
lab_pass "pcp, natpmp and upnp available on $LAN_GW (default route), external $PUBLIC, in $ms ms"

# map PROTOCOL PORT — the whole check for one protocol.
map() {
  local proto=$1 port=$2 out=$LAB_DIR/state/map-$1.json ext_addr ext_port pid
  lab_step "$proto: map UDP $port on the host"
  lab_udp_open "host-$proto" "$HOST" -l -p "$port"
  # Before any mapping the router drops unsolicited datagrams (masquerade only).
  lab_udp_once "$INET" 41000 "$PUBLIC" "$port" "early-$proto"
  ! lab_udp_wait "host-$proto" "early-$proto" 1 || lab_fail "$proto: a datagram got in before any mapping"

  t0=${EPOCHREALTIME/./}
  lab_bg "probe-$proto" "$HOST" "$PROBE" --port "$port" --gateway "$LAN_GW" --protocol "$proto" --hold 6 --lifetime 600
  pid=$LAB_BG_LAST
  lab_wait_for 15 "$proto mapping answer" grep -q '"ok"' "$LAB_DIR/logs/probe-$proto.log"
  ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
  grep '"ok"' "$LAB_DIR/logs/probe-$proto.log" | head -1 >"$out"
  [[ "$(json "$out" ok)" == true ]] || lab_fail "$proto: no mapping: $(cat "$out")"
  [[ "$(json "$out" protocol)" == "$proto" ]] || lab_fail "$proto: answered by $(json "$out" protocol)"
  ext_addr=$(json "$out" external_address) ext_port=$(json "$out" external_port)
  [[ "$ext_addr" == "$PUBLIC" ]] || lab_fail "$proto: external address $ext_addr, expected the router's $PUBLIC"
  [[ "$ext_port" =~ ^[0-9]+$ ]] && (( ext_port > 0 && ext_port < 65536 )) || lab_fail "$proto: bad external port '$ext_port'"
  lab_pass "$proto: mapped $HOST_ADDR:$port -> $ext_addr:$ext_port, lifetime $(json "$out" lifetime_s) s, in $ms ms"
  rule_for "$ext_port" || lab_fail "$proto: miniupnpd has no redirect for $ext_port in table $TABLE"

  lab_udp_once "$INET" 41001 "$ext_addr" "$ext_port" "hello-$proto"
  lab_udp_wait "host-$proto" "hello-$proto" 5 || lab_fail "$proto: a datagram to $ext_addr:$ext_port did not reach the host's port $port"
  lab_pass "$proto: a datagram from the internet to $ext_addr:$ext_port reached $HOST_ADDR:$port"
  lab_udp_close "host-$proto"

  lab_bg_wait "$pid" 20
  (( LAB_BG_RC == 0 )) || lab_fail "$proto: portmap_probe exited with $LAB_BG_RC"
  grep -q '"stopped":true' "$LAB_DIR/logs/probe-$proto.log" || lab_fail "$proto: the probe did not stop cleanly"
  lab_wait_for 5 "$proto: redirect for $ext_port removed" no_rule_for "$ext_port"
  lab_udp_open "host2-$proto" "$HOST" -l -p "$port"
  lab_udp_once "$INET" 41002 "$ext_addr" "$ext_port" "late-$proto"
  ! lab_udp_wait "host2-$proto" "late-$proto" 1 || lab_fail "$proto: a datagram still got in after the mapping was deleted"
  lab_udp_close "host2-$proto"
  lab_pass "$proto: mapping deleted on exit (no redirect left, datagrams dropped again)"
}

map pcp 40001
map natpmp 40002
map upnp 40003

lab_step "any: the first protocol that works wins (PCP)"
out=$LAB_DIR/state/map-any.json
ip netns exec "$HOST" "$PROBE" --port 40004 --hold 0 >"$out" 2>"$LAB_DIR/logs/probe-any.log" || lab_fail "any: $(cat "$out")"
[[ "$(json "$out" protocol)" == pcp && "$(json "$out" external_address)" == "$PUBLIC" ]] || lab_fail "any: $(cat "$out")"
lab_pass "any: $(json "$out" protocol) -> $(json "$out" external)"

lab_step "a gateway with no port-mapping server fails fast, with a reason"
out=$LAB_DIR/state/map-none.json
t0=${EPOCHREALTIME/./}
rc=0
ip netns exec "$HOST" "$PROBE" --port 40005 --gateway "$INET_ADDR" --protocol pcp >"$out" 2>/dev/null || rc=$?
ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
(( rc == 1 )) || lab_fail "no server: exit $rc, expected 1: $(cat "$out")"
reason=$(head -1 "$out" | jq -r '.failures[0].text')
[[ "$reason" == *"port unreachable"* || "$reason" == *"no answer"* ]] || lab_fail "no server: unclear reason '$reason'"
(( ms < 5000 )) || lab_fail "no server: took $ms ms"
lab_pass "no server at $INET_ADDR: '$reason' after $ms ms"

lab_step "cleanup"
lab__reap "$MINIUPNPD_PID" 5 TERM
cleanup_miniupnpd
! ip netns exec "$RTR" nft list table inet "$TABLE" >/dev/null 2>&1 || lab_fail "table $TABLE left behind"
[[ ! -e "$MDIR/miniupnpd.pid" ]] || lab_fail "miniupnpd pid file left behind"
lab_pass "miniupnpd stopped, its table, pid and lease files removed"
lab_pass "portmap: PCP, NAT-PMP and UPnP IGD each map, forward and delete"
