#!/usr/bin/env bash
# Names: every node is NAME.knit.internal, answered by each knitd's resolver on 100.100.100.100.
#
#                          [kn-core-SFX] router
#            10.200.100.1 /    |10.200.1.1  |10.200.2.1  |10.200.3.1  \10.200.50.1
#   10.200.100.2 [coord]   [a1] 10.200.1.2  [a2] .2.2    [a3] .3.2    [up] 10.200.50.2
#   knit-coordinator        knitd + knit on each agent                 dns_lab: *.lab.example
#
# Each agent's /etc/resolv.conf is its own: `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf
# over /etc/resolv.conf in a private mount namespace (no systemd-resolved in there), so knitd runs
# in the resolv.conf mode (`knit set --manage-resolv-conf=true`); the mode that ran is printed.
#
# Checks: `getent hosts agentJ.knit.internal` and `ping agentJ` (the search domain) from every
# agent; a rename at the coordinator answers within 2 s, the old name NXDOMAIN; a removed node
# NXDOMAIN within 2 s; a new mesh domain (`dns domain`) reaches names and the search list; a non-mesh name forwarded to the lab's DNS server (and a truncated answer
# fetched again over TCP; an answer too large for the stub's UDP comes to it over TCP from knitd);
# resolv.conf lists the IPv6 resolver too, and it answers; split DNS sends lab.example to a
# resolver on agent2's LAN through agent2 as an approved subnet router, and back when removed; a 5000-query flood is rate-limited
# per source while the mesh keeps working and the resolver answers again right after;
# the resolver answers nothing from the underlay (not on the agent's
# underlay address, not for a packet routed to 100.100.100.100 through an IP-forwarding agent);
# `knit down` and knitd's exit restore resolv.conf byte for byte; accept-dns=false leaves it alone.
# Runs in about 20 s.
set -euo pipefail
source "$(dirname "$0")/../lab/lib.sh"
lab_init ping jq getent cmp
lab_require_impl knitd
for tool in knit knit-coordinator; do
  [[ -x "$KNIT_BIN/$tool" ]] || lab_fail "$KNIT_BIN/$tool is missing: build the project first"
done
DNS_LAB="${KNIT_TEST_TOOLS:-$KNIT_BIN/../tests/tools}/dns_lab"
[[ -x "$DNS_LAB" ]] || lab_fail "$DNS_LAB is missing: build the project first"

COORD_STATE="$LAB_DIR/coordinator"
COORD_ADDR=10.200.100.2:7443

lab_router_add core
CORE=$(lab_ns core)
lab_ns_add coord
lab_uplink "$(lab_ns coord)" "$(lab_name co)" 10.200.100.2/24 "$CORE" "$(lab_name rco)" 10.200.100.1/24
lab_ns_add up
lab_uplink "$(lab_ns up)" "$(lab_name eu)" 10.200.50.2/24 "$CORE" "$(lab_name ru)" 10.200.50.1/24
declare -A NS IFN ORIGINAL
for i in 1 2 3; do
  lab_ns_add "a$i"
  NS[$i]=$(lab_ns "a$i")
  IFN[$i]=$(lab_name "k$i")
  lab_uplink "${NS[$i]}" "$(lab_name "e$i")" "10.200.$i.2/24" "$CORE" "$(lab_name "r$i")" "10.200.$i.1/24"
  mkdir -p "/etc/netns/${NS[$i]}"
  printf '# the lab host a%s\nnameserver 10.200.50.2\nsearch lab.example\noptions timeout:1 attempts:2\n' "$i" \
    >"/etc/netns/${NS[$i]}/resolv.conf"
  ORIGINAL[$i]="$LAB_DIR/resolv.conf.a$i"
  cp "/etc/netns/${NS[$i]}/resolv.conf" "${ORIGINAL[$i]}"
done

coordinator() { "$KNIT_BIN/knit-coordinator" --state-dir "$COORD_STATE" "$@"; }
knit_in() { local i=$1; shift; ip netns exec "${NS[$i]}" "$KNIT_BIN/knit" --socket "$LAB_DIR/state/${IFN[$i]}/knitd.sock" "$@"; }
in_ns() { local i=$1; shift; ip netns exec "${NS[$i]}" "$@"; }
# resolves_to I NAME IPV4 — the host's resolver (glibc, through resolv.conf) gives NAME's A
resolves_to() { [[ "$(in_ns "$1" getent ahostsv4 "$2" | awk '{print $1; exit}')" == "$3" ]]; }
rcode() { in_ns "$1" "$DNS_LAB" query 100.100.100.100 "$2" A --timeout 1 | awk '{print $1}'; }
is_nxdomain() { [[ "$(rcode "$1" "$2")" == NXDOMAIN ]]; }
peers_online() { [[ "$(knit_in "$1" status --json | jq '[.peers[] | select(.online)] | length')" == "$2" ]]; }
resolv_is() { cmp -s "/etc/netns/${NS[$1]}/resolv.conf" "$2"; }

lab_step "coordinator (domain knit.internal by default), the lab's DNS server, three agents"
lab_bg coordinator "$(lab_ns coord)" "$KNIT_BIN/knit-coordinator" --state-dir "$COORD_STATE" serve --listen "$COORD_ADDR"
lab_wait_for 10 "the coordinator to listen" ip netns exec "$(lab_ns coord)" nc -z -w 1 10.200.100.2 7443
lab_bg dns_lab "$(lab_ns up)" "$DNS_LAB" serve 10.200.50.2
lab_wait_for 5 "the lab DNS server" ip netns exec "$(lab_ns up)" nc -z -w 1 10.200.50.2 53
[[ "$(coordinator dns show | head -n 1)" == "domain knit.internal" ]] || lab_fail "dns show: $(coordinator dns show)"
TOKEN=$(coordinator token create --reusable --advertise "$COORD_ADDR" | tail -n 1)
declare -A IP
for i in 1 2 3; do
  lab_wg_start knitd "${NS[$i]}" "${IFN[$i]}"
  knit_in "$i" set --manage-resolv-conf=true >/dev/null
  knit_in "$i" up --token "$TOKEN" --hostname "agent$i" >/dev/null || lab_fail "knit up on agent$i failed"
  IP[$i]=$(knit_in "$i" ip -4)
  [[ "${IP[$i]}" != 100.100.100.100 ]] || lab_fail "the coordinator handed out the resolver address"
done
for i in 1 2 3; do lab_wait_for 10 "agent$i to see 2 peers online" peers_online "$i" 2; done
MODE=$(knit_in 1 dns status --json | jq -r .mode)
lab_log "host integration mode: $MODE ($(knit_in 1 dns status --json | jq -r .detail))"
[[ "$MODE" == resolv.conf ]] || lab_fail "expected the resolv.conf mode, got $MODE"
grep -q '^nameserver 100.100.100.100$' "/etc/netns/${NS[1]}/resolv.conf" || lab_fail "resolv.conf not pointed at the resolver"
grep -q '^search knit.internal lab.example$' "/etc/netns/${NS[1]}/resolv.conf" || lab_fail "search list: $(cat "/etc/netns/${NS[1]}/resolv.conf")"
RESOLVER6=$(knit_in 1 dns status --json | jq -r '.listen[1]')
grep -q "^nameserver $RESOLVER6\$" "/etc/netns/${NS[1]}/resolv.conf" || lab_fail "resolv.conf lists no IPv6 resolver ($RESOLVER6): $(cat "/etc/netns/${NS[1]}/resolv.conf")"

lab_step "getent hosts agentJ.knit.internal and ping agentJ (search domain) from every agent"
for i in 1 2 3; do
  for j in 1 2 3; do
    lab_wait_for 5 "agent$i to resolve agent$j.knit.internal" resolves_to "$i" "agent$j.knit.internal" "${IP[$j]}"
    [[ $i == "$j" ]] && continue
    in_ns "$i" ping -4 -c 1 -W 2 "agent$j" >/dev/null || lab_fail "ping agent$j from agent$i"
  done
done
V6_2=$(knit_in 1 status --json | jq -r '.peers[] | select(.name == "agent2") | .ipv6')
got=$(in_ns 1 getent hosts agent2.knit.internal | awk '{print $1}')
[[ "$got" == "${IP[2]}" || "$got" == "$V6_2" ]] || lab_fail "getent hosts agent2.knit.internal gave '$got' (not ${IP[2]} or $V6_2)"
[[ "$(in_ns 1 getent ahostsv6 agent2.knit.internal | awk '{print $1; exit}')" == "$V6_2" ]] || lab_fail "no AAAA for agent2"
resolves_to 1 AGENT2.Knit.Internal "${IP[2]}" || lab_fail "names are not case-insensitive"
[[ "$(in_ns 1 getent hosts "${IP[2]}" | awk '{print $2}')" == agent2.knit.internal ]] || lab_fail "no PTR for ${IP[2]}"
is_nxdomain 1 nobody.knit.internal || lab_fail "an unknown mesh name is not NXDOMAIN"
out=$(in_ns 1 "$DNS_LAB" query "[$RESOLVER6]:53" agent2.knit.internal A --timeout 2 || true)
[[ "$out" == "NOERROR answers=1" ]] || lab_fail "the IPv6 resolver $RESOLVER6 answered '$out'"
lab_pass "names, short names, case, PTR and NXDOMAIN answered by the mesh resolver"

lab_step "a non-mesh name is forwarded to the lab's DNS server (TCP after a truncated answer)"
resolves_to 1 www.lab.example 198.51.100.7 || lab_fail "www.lab.example not forwarded: $(in_ns 1 getent hosts www.lab.example)"
resolves_to 1 big.lab.example 198.51.100.8 || lab_fail "big.lab.example (truncated over UDP) not fetched over TCP"
grep -q '^tcp big.lab.example' "$LAB_DIR/logs/dns_lab.log" || lab_fail "the lab server saw no TCP query"
(( $(knit_in 1 dns status --json | jq '.counters.tcp_retries') >= 1 )) || lab_fail "no TCP retry counted"
lab_pass "forwarded over UDP, and over TCP after truncation"

lab_step "a stub asks knitd over TCP: an answer too large for its UDP (glibc, no EDNS)"
# 80 A records: knitd fetches them over TCP from the lab server, answers glibc's UDP query
# truncated (512 bytes), and glibc asks again over TCP to 100.100.100.100:53.
got=$(in_ns 1 getent ahostsv4 huge.lab.example | awk '{print $1}' | sort -u | wc -l)
[[ "$got" == 80 ]] || lab_fail "huge.lab.example gave $got addresses over TCP (want 80)"
tcp_answers=$(knit_in 1 dns status --json | jq '.counters.tcp_answers')
(( tcp_answers >= 1 )) || lab_fail "knitd counted no TCP answer to the stub ($tcp_answers)"
lab_pass "80 addresses through knitd's DNS over TCP (tcp_answers $tcp_answers)"

lab_step "split DNS: lab.example goes to a resolver on agent2's LAN, through agent2 as a subnet router"
# [LAN 10.201.0.53] dns_lab -- agent2 (advertises 10.201.0.0/24, forwards) ~~mesh~~ agent1
lab_ns_add lan
LAN_NS=$(lab_ns lan)
lab_veth "${NS[2]}" "$(lab_name l2)" 10.201.0.1/24 "$LAN_NS" "$(lab_name ll)" 10.201.0.53/24
lab_sysctl "${NS[2]}" net.ipv4.ip_forward 1
lab_route "$LAN_NS" 100.64.0.0/10 10.201.0.1
lab_bg dns_lan "$LAN_NS" "$DNS_LAB" serve 10.201.0.53
lab_wait_for 5 "the LAN DNS server" ip netns exec "$LAN_NS" nc -z -w 1 10.201.0.53 53
knit_in 2 set --advertise-routes 10.201.0.0/24 >/dev/null || lab_fail "knit set --advertise-routes on agent2"
lab_wait_for 5 "the coordinator to record agent2's route" \
  sh -c "$KNIT_BIN/knit-coordinator --state-dir $COORD_STATE routes list --json | grep -q 10.201.0.0/24"
coordinator routes approve agent2 10.201.0.0/24 >/dev/null || lab_fail "routes approve agent2 10.201.0.0/24"
knit_in 1 set --accept-routes=true >/dev/null || lab_fail "knit set --accept-routes=true on agent1"
coordinator dns split lab.example 10.201.0.53 >/dev/null || lab_fail "dns split lab.example 10.201.0.53"
lab_wait_for 5 "agent1 to route 10.201.0.0/24 through the mesh" \
  sh -c "ip -n ${NS[1]} route get 10.201.0.53 | grep -q 'dev ${IFN[1]}'"
lab_wait_for 5 "agent1 to resolve split.lab.example through the LAN resolver" resolves_to 1 split.lab.example 198.51.100.7
grep -q '^udp split.lab.example' "$LAB_DIR/logs/dns_lan.log" || lab_fail "the LAN resolver saw no query for split.lab.example"
! grep -q 'split.lab.example' "$LAB_DIR/logs/dns_lab.log" || lab_fail "split.lab.example went to the default upstream"
coordinator dns split lab.example >/dev/null || lab_fail "removing the split domain"
lab_wait_for 5 "split.lab.example to go to the default upstream again" \
  sh -c "ip netns exec ${NS[1]} getent ahostsv4 split2.lab.example >/dev/null && grep -q split2.lab.example $LAB_DIR/logs/dns_lab.log"
lab_pass "split DNS through a subnet router: lab.example answered by 10.201.0.53 on agent2's LAN, back to the default when removed"

lab_step "a rename at the coordinator answers within 2 s; a removed node is NXDOMAIN within 2 s"
T0=$(date +%s%N)
coordinator nodes rename agent3 desk3 >/dev/null
lab_wait_for 2 "agent1 to resolve desk3" resolves_to 1 desk3.knit.internal "${IP[3]}"
lab_log "rename visible after $((($(date +%s%N) - T0) / 1000000)) ms"
is_nxdomain 1 agent3.knit.internal || lab_fail "the old name still answers"
# The renamed node itself follows (self_update): its own status and resolver use the new name.
lab_wait_for 2 "agent3 to know itself as desk3" \
  sh -c "[ \"\$(ip netns exec ${NS[3]} $KNIT_BIN/knit --socket $LAB_DIR/state/${IFN[3]}/knitd.sock status --json | jq -r .self.name)\" = desk3 ]"
resolves_to 3 desk3.knit.internal "${IP[3]}" || lab_fail "agent3 does not resolve its own new name"
is_nxdomain 3 agent3.knit.internal || lab_fail "agent3 still answers its old name"
T0=$(date +%s%N)
coordinator nodes remove desk3 >/dev/null
lab_wait_for 2 "agent2 to answer NXDOMAIN for desk3" is_nxdomain 2 desk3.knit.internal
lab_log "removal visible after $((($(date +%s%N) - T0) / 1000000)) ms"
lab_pass "rename (the renamed node too) and removal reached the resolvers"

lab_step "a new mesh domain reaches the agents: names and the search list follow"
T0=$(date +%s%N)
coordinator dns domain corp.internal >/dev/null
lab_wait_for 2 "agent1 to resolve agent2.corp.internal" resolves_to 1 agent2.corp.internal "${IP[2]}"
lab_log "domain change visible after $((($(date +%s%N) - T0) / 1000000)) ms"
grep -q '^search corp.internal lab.example$' "/etc/netns/${NS[1]}/resolv.conf" || lab_fail "search list not updated"
in_ns 1 ping -4 -c 1 -W 2 agent2 >/dev/null || lab_fail "ping agent2 (short name) after the domain change"
! resolves_to 1 agent2.knit.internal "${IP[2]}" || lab_fail "the old domain still answers"
lab_pass "domain changed to corp.internal on the agents"

lab_step "a query flood is rate-limited per source and the resolver stays up"
before=$(knit_in 1 dns status --json | jq '.counters.rate_limited')
flood=$(in_ns 1 "$DNS_LAB" flood 100.100.100.100 agent2.corp.internal 5000)
after=$(knit_in 1 dns status --json | jq '.counters.rate_limited')
answered=$(awk '{print $4}' <<<"$flood")
lab_log "flood from agent1: $flood; rate_limited $before -> $after"
(( after - before >= 3000 )) || lab_fail "5000 back-to-back queries: only $((after - before)) rate-limited"
(( answered >= 300 && answered <= 1500 )) || lab_fail "flood: $answered answered (burst 400 + 200/s expected)"
in_ns 2 ping -4 -c 1 -W 2 "${IP[1]}" >/dev/null || lab_fail "the mesh stopped carrying traffic after the flood"
sleep 1
lab_wait_for 3 "agent1's resolver to answer again after the flood" resolves_to 1 agent2.corp.internal "${IP[2]}"
lab_pass "flood: $answered of 5000 answered, $((after - before)) rate-limited, answers again right after"

lab_step "the resolver is silent on the underlay"
out=$(ip netns exec "$CORE" "$DNS_LAB" query 10.200.1.2 agent2.knit.internal A --timeout 1 || true)
[[ "$out" == timeout || "$out" == "bad answer" ]] || lab_fail "agent1's underlay address answered: $out"
# Even routed into the TUN by an agent that forwards IP: the source is not this node's.
lab_sysctl "${NS[1]}" net.ipv4.ip_forward 1
ip -n "$CORE" route replace 100.100.100.100/32 via 10.200.1.2
before=$(knit_in 1 dns status --json | jq '.counters.refused_source')
out=$(ip netns exec "$CORE" "$DNS_LAB" query 100.100.100.100 agent2.knit.internal A --timeout 1 || true)
[[ "$out" == timeout ]] || lab_fail "a query routed from the underlay was answered: $out"
after=$(knit_in 1 dns status --json | jq '.counters.refused_source')
lab_log "underlay query routed into agent1's TUN: refused_source $before -> $after"
(( after > before )) || lab_fail "the routed query never reached agent1's TUN: the check proves nothing"
ip -n "$CORE" route del 100.100.100.100/32
lab_sysctl "${NS[1]}" net.ipv4.ip_forward 0
lab_pass "no answer on the underlay"

lab_step "knit down, accept-dns=false, knitd's exit and removal restore resolv.conf exactly"
knit_in 1 down >/dev/null
resolv_is 1 "${ORIGINAL[1]}" || lab_fail "knit down did not restore agent1's resolv.conf: $(cat "/etc/netns/${NS[1]}/resolv.conf")"
knit_in 2 set --accept-dns=false >/dev/null
resolv_is 2 "${ORIGINAL[2]}" || lab_fail "accept-dns=false did not restore agent2's resolv.conf"
[[ "$(knit_in 2 dns status --json | jq -r .mode)" == off ]] || lab_fail "accept-dns=false: mode is not off"
knit_in 2 set --accept-dns=true >/dev/null
lab_wait_for 2 "agent2's resolv.conf to point at the resolver again" grep -q '^nameserver 100.100.100.100$' "/etc/netns/${NS[2]}/resolv.conf"
lab_wg_stop "${IFN[2]}"
resolv_is 2 "${ORIGINAL[2]}" || lab_fail "knitd's exit did not restore agent2's resolv.conf"
lab_wait_for 5 "agent3 (removed from the mesh) to restore its resolv.conf" resolv_is 3 "${ORIGINAL[3]}"
lab_pass "resolv.conf restored byte for byte (down, accept-dns=false, exit, removal); mode was $MODE"
