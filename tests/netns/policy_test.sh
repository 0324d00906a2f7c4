#!/usr/bin/env bash
# The access policy end to end: the coordinator holds it, each knitd enforces the rules for
# traffic into itself, statefully.
#
#                                   [kn-core-SFX] router
#        10.220.100.1 /     10.220.1.1 |    10.220.2.1 |     10.220.3.1 |     \ 10.220.4.1
#   10.220.100.2 [coord]        [web] .1.2      [db] .2.2       [ops] .3.2      [plain] .4.2
#   knit-coordinator            tag web         tag db          tagged ops by   no tags
#                               (its token)     (its token)     the admin
#
# Policy: web -> db 5432/tcp and 53/udp; group:admins (tag:ops) -> everything. Checks:
#   allowed TCP, UDP and ping work; denied TCP (db -> web, plain -> db, web -> db:22) and ping
#   (plain -> db) fail and db's / web's `.self.policy.denied` rise; web's own connection to db
#   gets its replies although db may not open flows into web; `knit debug policy` on db names
#   the rules; a port forward on db (8022 -> its own :22) is open to ops, refused to web. A live change lets db into web:7000 within 2 s (web's rules at the new version),
#   and taking it away again cuts the established connection (`.self.policy.cut`) and refuses
#   new ones. A policy whose tests fail is refused with its line and column and changes nothing.
set -euo pipefail
source "$(dirname "$0")/../lab/lib.sh"
lab_init ping nc jq
lab_require_impl knitd
for tool in knit knit-coordinator; do
  [[ -x "$KNIT_BIN/$tool" ]] || lab_fail "$KNIT_BIN/$tool is missing: build the project first"
done

COORD_STATE="$LAB_DIR/coordinator"
COORD_ADDR=10.220.100.2:7443
NODES=(web db ops plain)

lab_router_add core
CORE=$(lab_ns core)
lab_ns_add coord
lab_uplink "$(lab_ns coord)" "$(lab_name co)" 10.220.100.2/24 "$CORE" "$(lab_name rco)" 10.220.100.1/24
declare -A NS IF IP4
i=1
for n in "${NODES[@]}"; do
  lab_ns_add "$n"
  NS[$n]=$(lab_ns "$n")
  lab_uplink "${NS[$n]}" "$(lab_name "e$n")" "10.220.$i.2/24" "$CORE" "$(lab_name "r$n")" "10.220.$i.1/24"
  IF[$n]=$(lab_name "k$n")
  i=$((i + 1))
done

lab_bg coordinator "$(lab_ns coord)" "$KNIT_BIN/knit-coordinator" --state-dir "$COORD_STATE" serve --listen "$COORD_ADDR"
lab_wait_for 10 "the coordinator to listen on $COORD_ADDR" \
  ip netns exec "$(lab_ns coord)" nc -z -w 1 "${COORD_ADDR%:*}" "${COORD_ADDR#*:}"
coordinator() { "$KNIT_BIN/knit-coordinator" --state-dir "$COORD_STATE" "$@"; }
knit_on() { local n=$1; shift; ip netns exec "${NS[$n]}" "$KNIT_BIN/knit" --socket "$LAB_DIR/state/${IF[$n]}/knitd.sock" "$@"; }
policy_field() { knit_on "$1" status --json | jq -r ".self.policy.$2"; }
# field_test NODE FIELD OP VALUE — `test` on a policy field read afresh at every poll.
field_test() { test "$(policy_field "$1" "$2")" "$3" "$4"; }
sees_all() { [[ "$(knit_on "$1" status --json | jq '[.peers[] | select(.online)] | length')" == 3 ]]; }
# connects FROM TO PORT — a TCP handshake to TO's mesh IPv4 completes within 2 s.
connects() { ip netns exec "${NS[$1]}" timeout 4 nc -z -w 2 "${IP4[$2]}" "$3"; }
listen_forever() {  # NAME NODE PORT
  lab_bg "$1" "${NS[$2]}" sh -c "while :; do nc -l -p $3 </dev/null >/dev/null || sleep 0.2; done"
  lab_wait_for 10 "a listener on port $3 in $2" lab__listening "${NS[$2]}" "$3"
}
pings() { ip netns exec "${NS[$1]}" ping -c 1 -W 1 -n "${IP4[$2]}" >/dev/null 2>&1; }
write_policy() { printf '%s\n' "$2" >"$LAB_DIR/$1.json"; printf '%s\n' "$LAB_DIR/$1.json"; }

lab_step "four agents join: web and db by their tokens' tags, ops tagged by the admin, plain untagged"
for n in "${NODES[@]}"; do
  case $n in web|db) tag=(--tag "$n") ;; *) tag=() ;; esac
  token=$(coordinator token create --advertise "$COORD_ADDR" "${tag[@]}" | tail -n 1)
  lab_wg_start knitd "${NS[$n]}" "${IF[$n]}"
  knit_on "$n" up --token "$token" --hostname "$n" >/dev/null || lab_fail "knit up on $n failed"
  IP4[$n]=$(knit_on "$n" ip -4)
done
coordinator nodes tag ops tag:ops | grep -qx 'ops: tag:ops' || lab_fail "nodes tag ops tag:ops did not say so"
for n in "${NODES[@]}"; do lab_wait_for 15 "$n to see the three others online" sees_all "$n"; done
[[ "$(policy_field db in_force)" == false ]] || lab_fail "db enforces a policy before one is set"
lab_pass "web ${IP4[web]}, db ${IP4[db]}, ops ${IP4[ops]}, plain ${IP4[plain]}; no policy yet"

listen_forever db-5432 db 5432
listen_forever db-22 db 22
listen_forever web-7000 web 7000
connects plain db 5432 || lab_fail "with no policy, plain cannot reach db:5432"
lab_pass "no policy: the mesh is open (plain reaches db:5432)"

lab_step "the policy is set and reaches every agent"
# policy_text [EXTRA_RULE] — the base policy, with one more rule when given.
policy_text() {
  cat <<JSON
{
  // who may reach what
  "groups": {"group:admins": ["tag:ops"]},
  "rules": [
    {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"], "proto": "tcp", "name": "web-db"},
    {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:53"], "proto": "udp", "name": "web-dns"},
    {"action": "accept", "src": ["group:admins"], "dst": ["*:*"], "name": "admins"},
    ${1:-}
  ],
  "tests": [
    {"src": "web", "accept": ["db:5432"], "deny": ["db:22", "plain:5432"]},
    {"src": "plain", "deny": ["db:5432"]},
  ],
}
JSON
}
POLICY=$(write_policy base "$(policy_text)")
t0=${EPOCHREALTIME/./}
coordinator policy set "$POLICY" | grep -q '^Policy set: 3 rules' || lab_fail "policy set did not confirm"
for n in "${NODES[@]}"; do lab_wait_for 5 "$n to enforce the policy" field_test "$n" in_force == true; done
lab_pass "every agent enforces it ($(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms after policy set)"
[[ "$(coordinator policy check web db 5432/tcp)" == *'allowed'*'"web-db"'* ]] || lab_fail "policy check web db 5432/tcp: $(coordinator policy check web db 5432/tcp)"
! coordinator policy check plain db 5432/tcp >/dev/null || lab_fail "policy check says plain may reach db:5432"
knit_on db debug policy | grep -q '"web-db"' || lab_fail "knit debug policy on db does not list web-db: $(knit_on db debug policy)"
knit_on db status | grep -q '^# access policy in force' || lab_fail "knit status on db does not say a policy is in force"
# Each map is trimmed to the peers a node may reach or be reached by: plain only ops (admins
# reach everyone); web and db each other and ops; ops everyone.
peer_names() { knit_on "$1" status --json | jq -r '[.peers[].name] | sort | join(",")'; }
sees_exactly() { [[ "$(peer_names "$1")" == "$2" ]]; }
declare -A SEES=([plain]=ops [web]=db,ops [db]=ops,web [ops]=db,plain,web)
for n in "${NODES[@]}"; do
  lab_wait_for 5 "$n's map to be trimmed to ${SEES[$n]}" sees_exactly "$n" "${SEES[$n]}"
done
lab_pass "maps trimmed by the policy: plain sees ${SEES[plain]}, web ${SEES[web]}, db ${SEES[db]}, ops ${SEES[ops]}"

lab_step "allowed traffic works"
connects web db 5432 || lab_fail "web cannot reach db:5432/tcp"
lab_bg db-53 "${NS[db]}" timeout 20 nc -u -l -p 53
lab_wait_for 5 "a UDP listener on db:53" sh -c "ip netns exec '${NS[db]}' ss -Hlun 'sport = :53' | grep -q ."
printf 'hello-from-web\n' | ip netns exec "${NS[web]}" timeout 3 nc -u -w 1 "${IP4[db]}" 53 || true
lab_wait_for 5 "db to receive web's UDP datagram" grep -q hello-from-web "$LAB_DIR/logs/db-53.log"
lab_poll 5 pings ops db || lab_fail "ops cannot ping db"
lab_poll 5 pings ops web || lab_fail "ops cannot ping web"
connects ops db 22 || lab_fail "ops (admins) cannot reach db:22"
[[ "$(knit_on db status --json | jq '[.self.policy.rules[] | select(.name | contains("web-db")) | .accepted_flows] | add')" -ge 1 ]] \
  || lab_fail "db's web-db rule counted no flow: $(knit_on db status --json | jq -c .self.policy)"
lab_pass "web -> db 5432/tcp and 53/udp, ops -> db and web (ping, TCP) all pass; counted per rule"

lab_step "denied traffic fails and is counted; replies to a node's own flows pass"
denied_db=$(policy_field db denied)
denied_web=$(policy_field web denied)
! connects plain db 5432 || lab_fail "plain reached db:5432"
! connects web db 22 || lab_fail "web reached db:22"
! pings plain db || lab_fail "plain's ping to db was answered"
! connects db web 7000 || lab_fail "db opened a connection into web:7000"
(( $(policy_field db denied) > denied_db )) || lab_fail "db's denied counter did not rise"
(( $(policy_field web denied) > denied_web )) || lab_fail "web's denied counter did not rise"
connects web db 5432 || lab_fail "web's own connection to db got no reply"
lab_pass "plain -> db:5432, web -> db:22, plain ping db, db -> web:7000 refused (db denied $(policy_field db denied), web denied $(policy_field web denied)); db's replies to web pass"

lab_step "a port forward is a service of its node: the policy decides who may use it"
knit_on db forward add tcp 8022 10.220.2.2:22 >/dev/null || lab_fail "knit forward add on db failed"
connects ops db 8022 || lab_fail "ops (admins) cannot reach db's forward 8022 -> :22"
denied_db=$(policy_field db denied)
! connects web db 8022 || lab_fail "web reached db's forward 8022, which no rule lets it use"
(( $(policy_field db denied) > denied_db )) || lab_fail "db's denied counter did not rise for the forward"
knit_on db forward remove tcp 8022 >/dev/null || lab_fail "knit forward remove on db failed"
lab_pass "ops reaches db's forward tcp/8022 -> 10.220.2.2:22; web is refused and counted"

lab_step "a live change opens access within 2 s, and taking it back cuts the open connection"
OPEN=$(write_policy open "$(policy_text '{"action": "accept", "src": ["tag:db"], "dst": ["tag:web:7000"], "proto": "tcp", "name": "db-web"},')")
v0=$(policy_field web version)
t0=${EPOCHREALTIME/./}
coordinator policy set "$OPEN" >/dev/null || lab_fail "policy set (open) failed"
lab_wait_for 2 "web to get the new rules" field_test web version -gt "$v0"
ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
connects db web 7000 || lab_fail "db cannot reach web:7000 after the change"
lab_pass "web enforces the new rules ${ms} ms after policy set; db reaches web:7000"
# A connection that stays open: db -> web:7001, data trickling both ways.
lab_bg web-7001 "${NS[web]}" timeout 60 sh -c "nc -l -p 7001 </dev/null >/dev/null"
lab_wait_for 5 "a listener on web:7001" lab__listening "${NS[web]}" 7001
OPEN2=$(write_policy open2 "$(policy_text '{"action": "accept", "src": ["tag:db"], "dst": ["tag:web:7000-7001"], "proto": "tcp", "name": "db-web"},')")
coordinator policy set "$OPEN2" >/dev/null || lab_fail "policy set (open2) failed"
lab_wait_for 2 "web to allow 7001" sh -c "[ \"\$(ip netns exec '${NS[web]}' '$KNIT_BIN/knit' --socket '$LAB_DIR/state/${IF[web]}/knitd.sock' debug policy | grep -c 7001)\" -ge 1 ]"
lab_bg db-7001 "${NS[db]}" timeout 60 sh -c "while :; do echo tick; sleep 0.2; done | nc ${IP4[web]} 7001"
lab_wait_for 5 "db's connection to web:7001 to be established" \
  sh -c "ip netns exec '${NS[db]}' ss -Htn state established 'dport = :7001' | grep -q ."
cut0=$(policy_field web cut)
v1=$(policy_field web version)
t0=${EPOCHREALTIME/./}
coordinator policy set "$POLICY" >/dev/null || lab_fail "policy set (back) failed"
lab_wait_for 2 "web to get the old rules back" field_test web version -gt "$v1"
ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
(( $(policy_field web cut) > cut0 )) || lab_fail "web cut no flow: $(knit_on web status --json | jq -c .self.policy)"
! connects db web 7000 || lab_fail "db still reaches web:7000 after the rule was taken away"
lab_pass "taken back: web enforces it ${ms} ms after policy set, cut $(( $(policy_field web cut) - cut0 )) open flow(s), db refused again"

lab_step "a policy whose tests fail is refused and changes nothing"
before=$(coordinator policy get | sha256sum)
vb=$(policy_field db version)
BAD=$(write_policy bad '{
  "rules": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
  "tests": [{"src": "plain", "deny": ["db:5432"]}]
}')
if out=$(coordinator policy set "$BAD" 2>&1); then lab_fail "a policy with a failing test was accepted: $out"; fi
[[ "$out" == *"$BAD:3:"*": test failed: plain -> db"*"(nothing changed)"* ]] || lab_fail "the refusal does not give line and column: $out"
[[ "$(coordinator policy get | sha256sum)" == "$before" ]] || lab_fail "the stored policy changed"
sleep 1
[[ "$(policy_field db version)" == "$vb" ]] || lab_fail "db got new rules from a refused policy"
! connects plain db 5432 || lab_fail "plain reaches db:5432 after a refused policy"
lab_pass "refused ($out); the stored policy and the agents' rules are unchanged"

lab_step "clearing the policy opens the mesh again: every map whole"
t0=${EPOCHREALTIME/./}
coordinator policy clear >/dev/null || lab_fail "policy clear failed"
lab_wait_for 3 "plain to see the three others again" sees_exactly plain db,ops,web
lab_pass "plain's map is whole again $(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms after policy clear"
lab_poll 10 connects plain db 5432 || lab_fail "with the policy cleared, plain cannot reach db:5432"
lab_pass "plain reaches db:5432 again"
