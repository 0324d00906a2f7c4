#!/usr/bin/env bash
# Shields and port forwards: knitd's stateful filter and DNAT between its TUN and the tunnel.
#
#                          [kn-core-SFX] router
#            10.210.100.1 /      |10.210.1.1         \10.210.2.1
#   10.210.100.2 [coord]       [a] 10.210.1.2         [b] 10.210.2.2
#   knit-coordinator            | 10.211.0.1 (ip_forward on; also a forward target itself)
#                               |
#                              [srv] 10.211.0.2, default route via a: a "LAN host" behind a
#
# Checks, all through the knit CLI on a:
#   `knit up --shields-up`: b's TCP connect and ping to a's mesh IPv4 and IPv6 fail, while a's own
#   TCP connection to b carries data and a's pings are answered; the refusals are counted in
#   `knit status --json` (.self.filter). `knit set --shields-up=false` at runtime: b connects.
#   With the shields up again, `knit forward add tcp 8080 10.211.0.2:80` (a host behind a) and
#   `... 8081 10.211.0.1:81` (an address of a itself) each carry 5 MiB from b, sha256 checked;
#   `knit forward list --json` shows them with their connections. knitd restarted: the shields
#   and forwards are still there (filter.json, 0600) and work; `forward remove` takes one away;
#   the shutdown line reports the filter's counters.
set -euo pipefail
source "$(dirname "$0")/../lab/lib.sh"
lab_init ping nc jq
lab_require_impl knitd
for tool in knit knit-coordinator; do
  [[ -x "$KNIT_BIN/$tool" ]] || lab_fail "$KNIT_BIN/$tool is missing: build the project first"
done

COORD_STATE="$LAB_DIR/coordinator"
COORD_ADDR=10.210.100.2:7443

lab_router_add core
CORE=$(lab_ns core)
lab_ns_add coord
lab_uplink "$(lab_ns coord)" "$(lab_name co)" 10.210.100.2/24 "$CORE" "$(lab_name rco)" 10.210.100.1/24
lab_ns_add a
lab_ns_add b
lab_ns_add srv
A=$(lab_ns a); B=$(lab_ns b); SRV=$(lab_ns srv)
lab_uplink "$A" "$(lab_name ea)" 10.210.1.2/24 "$CORE" "$(lab_name ra)" 10.210.1.1/24
lab_uplink "$B" "$(lab_name eb)" 10.210.2.2/24 "$CORE" "$(lab_name rb)" 10.210.2.1/24
lab_uplink "$SRV" "$(lab_name es)" 10.211.0.2/24 "$A" "$(lab_name ls)" 10.211.0.1/24
lab_sysctl "$A" net.ipv4.ip_forward 1
IF_A=$(lab_name ka); IF_B=$(lab_name kb)

lab_bg coordinator "$(lab_ns coord)" "$KNIT_BIN/knit-coordinator" --state-dir "$COORD_STATE" serve --listen "$COORD_ADDR"
lab_wait_for 10 "the coordinator to listen on $COORD_ADDR" \
  ip netns exec "$(lab_ns coord)" nc -z -w 1 "${COORD_ADDR%:*}" "${COORD_ADDR#*:}"
coordinator() { "$KNIT_BIN/knit-coordinator" --state-dir "$COORD_STATE" "$@"; }
knit_a() { ip netns exec "$A" "$KNIT_BIN/knit" --socket "$LAB_DIR/state/$IF_A/knitd.sock" "$@"; }
knit_b() { ip netns exec "$B" "$KNIT_BIN/knit" --socket "$LAB_DIR/state/$IF_B/knitd.sock" "$@"; }
status_a() { knit_a status --json; }
peer_online() { [[ "$("$@" status --json | jq '[.peers[] | select(.online)] | length')" == 1 ]]; }

# connects NS ADDR PORT — a TCP handshake completes within 3 s.
connects() { ip netns exec "$1" timeout 5 nc -z -w 3 "$2" "$3"; }
# listen_forever NAME NS PORT [-6] — a listener that accepts connection after connection.
listen_forever() {
  lab_bg "$1" "$2" sh -c "while :; do nc ${4:-} -l -p $3 </dev/null >/dev/null || sleep 0.2; done"
  lab_wait_for 10 "a listener on port $3 in $2" lab__listening "$2" "$3"
}
# transfer NAME LISTEN_NS LISTEN_ADDR LISTEN_PORT CONNECT_ADDR CONNECT_PORT MB — MB MiB from b to
# CONNECT_ADDR:CONNECT_PORT, received by a listener on LISTEN_ADDR:LISTEN_PORT; sha256 compared.
transfer() {
  local name=$1 lns=$2 laddr=$3 lport=$4 caddr=$5 cport=$6 mb=$7 file out rpid spid us
  file=$(lab_data_file "$mb")
  out="$LAB_DIR/data/recv-$name.bin"
  rm -f "$out"
  lab_bg "$name-recv" "$lns" timeout 120 sh -c 'exec nc -l -s "$1" -p "$2" </dev/null >"$3"' nc "$laddr" "$lport" "$out"
  rpid=$LAB_BG_LAST
  lab_wait_for 10 "a listener on $laddr:$lport" lab__listening "$lns" "$lport"
  local t0=${EPOCHREALTIME/./}
  lab_bg "$name-send" "$B" timeout 120 sh -c 'exec nc -N -w 10 "$1" "$2" <"$3"' nc "$caddr" "$cport" "$file"
  spid=$LAB_BG_LAST
  lab_bg_wait "$spid" 120
  (( LAB_BG_RC == 0 )) || lab_fail "$name: sending $mb MiB to $caddr:$cport failed (status $LAB_BG_RC)"
  lab_bg_wait "$rpid" 20
  (( LAB_BG_RC == 0 )) || lab_fail "$name: the receiver on $laddr:$lport ended with status $LAB_BG_RC"
  us=$(( ${EPOCHREALTIME/./} - t0 ))
  [[ "$(sha256sum <"$file" | cut -d' ' -f1)" == "$(sha256sum <"$out" | cut -d' ' -f1)" ]] \
    || lab_fail "$name: sha256 mismatch ($(stat -c %s "$out") bytes received)"
  lab_pass "$name: $mb MiB from b to $caddr:$cport reached $laddr:$lport, sha256 matches (~$(awk -v b=$((mb * 1048576)) -v us="$us" 'BEGIN { printf "%.0f", b * 8 / us }') Mbit/s)"
}

lab_step "two agents join; a with --shields-up"
TOKEN=$(coordinator token create --reusable --advertise "$COORD_ADDR" | tail -n 1)
lab_wg_start knitd "$A" "$IF_A"
lab_wg_start knitd "$B" "$IF_B"
knit_a up --token "$TOKEN" --hostname a --shields-up >/dev/null || lab_fail "knit up --shields-up on a failed"
knit_b up --token "$TOKEN" --hostname b >/dev/null || lab_fail "knit up on b failed"
A4=$(knit_a ip -4); A6=$(knit_a ip -6); B4=$(knit_b ip -4); B6=$(knit_b ip -6)
lab_wait_for 10 "a to see b online" peer_online knit_a
lab_wait_for 10 "b to see a online" peer_online knit_b
status_a | jq -e '.self.shields_up == true and (.self.forwards == []) and (.self | has("name") and has("nat") and has("relay") and has("endpoints"))' >/dev/null \
  || lab_fail "status --json of a does not show the shields up beside the contract fields: $(status_a | jq -c .self)"
lab_pass "a ($A4, $A6) joined with the shields up; b is $B4, $B6"

lab_step "shields up: b cannot reach a; a reaches b and moves data"
listen_forever a-listener "$A" 7000
listen_forever a-listener6 "$A" 7006 -6
lab_ping "$A" "$B4" 10
lab_ping "$A" "$B6" 10
lab_pass "a pings b over IPv4 and IPv6 (echo replies pass)"
connects "$B" "$A4" 7000 && lab_fail "b connected to a's mesh IPv4 with the shields up"
connects "$B" "$A6" 7006 && lab_fail "b connected to a's mesh IPv6 with the shields up"
ip netns exec "$B" ping -c 2 -W 1 -n "$A4" >/dev/null 2>&1 && lab_fail "b's ping of a was answered with the shields up"
lab_pass "b's TCP connects (IPv4, IPv6) and pings to a fail"
F1=$(lab_data_file 1)
OUT="$LAB_DIR/data/a-to-b.bin"
lab_bg b-recv "$B" timeout 60 sh -c 'exec nc -l -p 7001 </dev/null >"$1"' nc "$OUT"
RPID=$LAB_BG_LAST
lab_wait_for 10 "b's listener" lab__listening "$B" 7001
ip netns exec "$A" timeout 60 nc -N -w 10 "$B4" 7001 <"$F1" || lab_fail "a's TCP connection to b failed with the shields up"
lab_bg_wait "$RPID" 20
[[ "$(sha256sum <"$F1" | cut -d' ' -f1)" == "$(sha256sum <"$OUT" | cut -d' ' -f1)" ]] || lab_fail "a -> b transfer corrupted"
lab_pass "a's own TCP connection to b carried 1 MiB (sha256 matches)"
REFUSED=$(status_a | jq '.self.filter.refused_v4 + .self.filter.refused_v6')
(( REFUSED > 0 )) || lab_fail "status counts no refused packets: $(status_a | jq -c .self.filter)"
lab_pass "status --json counts $REFUSED refused packets"

lab_step "knit set --shields-up=false at runtime: b connects"
[[ "$(knit_a set --shields-up=false --json | jq .shields_up)" == false ]] || lab_fail "knit set --json did not say shields_up false"
lab_wait_for 10 "b to connect to a's IPv4" connects "$B" "$A4" 7000
connects "$B" "$A6" 7006 || lab_fail "b cannot connect to a's mesh IPv6 with the shields down"
lab_ping "$B" "$A4" 5
status_a | jq -e '.self.shields_up == false' >/dev/null || lab_fail "status still shows the shields up"
lab_pass "shields down: b connects over IPv4 and IPv6 and pings a"
knit_a set --shields-up=true >/dev/null
connects "$B" "$A4" 7000 && lab_fail "b connected again after the shields went back up"
lab_pass "shields back up: b is refused again"

lab_step "port forwards with the shields up: to a host behind a, and to an address of a"
knit_a forward add tcp 8080 10.211.0.2:80 >/dev/null || lab_fail "knit forward add (host behind a) failed"
knit_a forward add tcp 8081 10.211.0.1:81 >/dev/null || lab_fail "knit forward add (a's own address) failed"
if knit_a forward add tcp 8082 127.0.0.1:80 2>/dev/null; then lab_fail "a forward to loopback was accepted"; fi
if knit_a forward add tcp 8080 10.211.0.3:80 2>/dev/null; then lab_fail "a second forward on mesh port 8080 was accepted"; fi
transfer fwd-lan "$SRV" 10.211.0.2 80 "$A4" 8080 5
transfer fwd-self "$A" 10.211.0.1 81 "$A4" 8081 5
knit_a forward list --json | jq -e 'length == 2 and all(.[]; .active and .connections >= 1 and .packets_in > 1000)' >/dev/null \
  || lab_fail "forward list --json: $(knit_a forward list --json | jq -c .)"
status_a | jq -e '(.self.forwards | length) == 2 and .self.filter.forwarded_in > 0' >/dev/null \
  || lab_fail "status does not show the forwards: $(status_a | jq -c .self)"
knit_a forward list | grep -q "10.211.0.2:80" || lab_fail "knit forward list (text) lacks the forward"
lab_pass "forward list shows both with their connections; status too"

lab_step "knitd restarted: shields and forwards persist"
lab_wg_stop "$IF_A"
LOG_A=$(ls -t "$LAB_DIR"/logs/knitd-"$IF_A"*.log | head -n 1)
grep -q "shields=up filter_refused_v4=[1-9]" "$LOG_A" || lab_fail "knitd's shutdown line lacks the filter counters: $(grep 'shutting down' "$LOG_A")"
lab_pass "shutdown summary: $(grep -o 'shields=.*forwarded_out=[0-9]*' "$LOG_A")"
[[ "$(stat -c %a "$LAB_DIR/state/$IF_A/filter.json")" == 600 ]] || lab_fail "filter.json is not mode 0600"
lab_wg_start knitd "$A" "$IF_A"
lab_wait_for 10 "a to rejoin and see b" peer_online knit_a
status_a | jq -e '.self.shields_up == true and (.self.forwards | length) == 2' >/dev/null \
  || lab_fail "after the restart: $(status_a | jq -c .self)"
connects "$B" "$A4" 7000 && lab_fail "b connected to a after the restart: the shields did not persist"
transfer fwd-again "$SRV" 10.211.0.2 80 "$A4" 8080 1
lab_pass "after the restart: shields up, 2 forwards, and they work"

lab_step "forward remove"
knit_a forward remove tcp 8080 >/dev/null || lab_fail "knit forward remove failed"
if knit_a forward remove tcp 8080 2>/dev/null; then lab_fail "removing a missing forward succeeded"; fi
[[ "$(knit_a forward list --json | jq -c '[.[] | .mesh_port]')" == "[8081]" ]] || lab_fail "forward list after remove: $(knit_a forward list --json | jq -c .)"
listen_forever srv-listener "$SRV" 80
connects "$B" "$A4" 8080 && lab_fail "mesh port 8080 still forwards after its removal"
lab_pass "forward removed; its port is refused again"

lab_step "PASS: shields and port forwards"
