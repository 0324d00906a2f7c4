# shellcheck shell=bash
# tests/lab/mesh.sh — a whole Knit mesh in the NAT lab: a coordinator and knit-relays "on the
# internet" (the core of nat.sh), and agents (knitd + the knit CLI) in any host namespace of
# the lab — core hosts, hosts behind a natbox or kernel NAT, a double NAT, a UDP-blocked site.
#
#     source "$(dirname "$0")/../lab/lib.sh"
#     source "$(dirname "$0")/../lab/nat.sh"
#     source "$(dirname "$0")/../lab/mesh.sh"
#     lab_init ping jq
#     lab_nat_core
#     mesh_coordinator_start                  # core host "coord", 192.0.2.1:7443
#     mesh_relay_start ra; mesh_relay_start rb  # core hosts, TCP :443, STUN on UDP :3478
#     lab_core_host pub;  mesh_agent_start pub "$(lab_host_ns pub)"
#     lab_site_natbox sy apdm apdf; mesh_agent_start sy "$(lab_site_host sy)"
#     mesh_agent_up pub; mesh_agent_up sy
#     mesh_wait_full 20                       # every agent sees every other agent online
#     mesh_path pub sy                        # direct | relay | none, from pub's `knit status --json`
#
# The picture (core hosts are nat.sh's: 192.0.2.(16j+1), in the order they were made):
#
#        [kn-coord-SFX]             [kn-ra-SFX]              [kn-rb-SFX]
#        knit-coordinator           knit-relay "ra"          knit-relay "rb"
#        192.0.2.1:7443 (TCP)       :443 TCP, :3478 STUN     :443 TCP, :3478 STUN
#              \                         |                        /
#               +------------------ [kn-core-SFX] ---------------+------ sites of nat.sh
#                                   "the internet"                       (natbox, kernel NAT,
#                                        |                               double NAT, UDP blocked)
#                              [kn-pub-SFX] knitd "pub"                  knitd in a site host
#
# Agents need STUN servers at two different addresses to tell whether their NAT's mapping
# varies by destination (punch/stun/nat_probe.hpp): a relay answers STUN on one address only,
# so a mesh where hard NATs must be recognised (port prediction) needs two relays.
#
# Functions (state-creating ones must run in the main shell, never inside $(...)):
#   mesh_coordinator_start [LABEL]       core host + `knit-coordinator serve`; MESH_COORD_ADDR
#   mesh_coordinator ARGS...             the admin CLI on the coordinator's state (safe in $())
#   mesh_token [ARGS...]                 a reusable node token (token create --reusable ...)
#   mesh_relay_start NAME                core host NAME (1-5 of [a-z0-9]) + knit-relay NAME with
#                                        a `token create --relay` token; waits until the
#                                        coordinator lists it online
#   mesh_relay_stop NAME                 SIGTERM; it must exit 0 within 10 s
#   mesh_agent_start LABEL NS [KNITD_ARGS...]   knitd in NS (TUN kLABEL-SFX, LABEL 1-7 chars)
#   mesh_agent_up LABEL [TOKEN]          `knit up --token --hostname LABEL`; records the mesh IP
#                                        and the moment (MESH_UP_US[LABEL], µs since the epoch)
#   mesh_agent_down LABEL                `knit down`
#   mesh_agent_stop LABEL                stops knitd (lab_wg_stop)
#   mesh_knit LABEL ARGS...              the knit CLI against LABEL's knitd (safe in $())
#   mesh_status LABEL                    `knit status --json`
#   mesh_peer LABEL PEER FIELD           one field of PEER in LABEL's status (jq -r; "null" if absent)
#   mesh_self LABEL FIELD                one field of LABEL's .self (jq -r)
#   mesh_path LABEL PEER                 direct | relay | none ("missing" when PEER is not listed)
#   mesh_paths LABEL                     "PEER PATH" lines for every peer (one status call)
#   mesh_ip LABEL                        LABEL's mesh IPv4 (after mesh_agent_up)
#   mesh_agents                          the labels of the running agents, in start order
#   mesh_sees_all LABEL                  status: every other running agent listed and online
#   mesh_wait_full TIMEOUT_S             every agent sees every other one online
#   mesh_wait_path TIMEOUT_S LABEL PEER KIND   polls until LABEL's path to PEER is KIND
#   mesh_ping_once LABEL PEER [WAIT_S]   one ICMP echo to PEER's mesh IP (status only)
#   mesh_ping LABEL PEER [TIMEOUT_S]     retries; fails the test when no answer comes
#   mesh_now_us                          µs since the epoch (for timings)
#   mesh_router_firewall ROUTER_NS WAN_IF   what home routers do: drop new flows from the WAN
#                                        to the router itself (see the function for why)
#
# Environment: KNIT_BIN must hold knitd, knit, knit-coordinator and knit-relay.

[[ -n "${LAB_MESH_LOADED:-}" ]] && return 0
LAB_MESH_LOADED=1
[[ -n "${LAB_NAT_LOADED:-}" ]] || { echo "mesh.sh: source lib.sh and nat.sh first" >&2; exit 1; }

MESH_COORD_NS="" MESH_COORD_ADDR="" MESH_COORD_STATE="" MESH_COORD_PID=""
MESH_TOKEN=""
MESH_RELAY_PORT=443
MESH_STUN_PORT=3478
MESH_AGENTS=()
declare -gA MESH_RELAY_PID=() MESH_RELAY_NS=() MESH_RELAY_ADDR=()
declare -gA MESH_AGENT_NS=() MESH_AGENT_IF=() MESH_IP=() MESH_UP_US=()

mesh_now_us() { printf '%s\n' "${EPOCHREALTIME/./}"; }

mesh__need_tools() {
  local t
  lab_require_tools jq
  for t in knitd knit knit-coordinator knit-relay; do
    [[ -x "$KNIT_BIN/$t" ]] || lab_fail "$KNIT_BIN/$t is missing: build it (cmake --build build) or set KNIT_BIN"
  done
}

# ---------------------------------------------------------------------------------------------
# routers
# ---------------------------------------------------------------------------------------------

# mesh_router_firewall ROUTER_NS WAN_IF — drops new inbound flows addressed to the router itself.
# It matters for kernel NATs and hole punching: without it, a peer's probe that reaches the NAT
# before our own first packet to that peer is delivered locally (to no socket) and leaves a
# confirmed conntrack entry PEER:p -> PUBLIC:q; our outgoing flow to PEER:p then clashes with it
# and masquerade gives it another port than the one STUN saw, so an "easy" NAT maps that one peer
# like a symmetric one, and every further probe from the peer keeps the entry alive. A drop in
# the input hook comes before conntrack confirms the entry, as on real routers (OpenWrt's WAN
# zone rejects input by default).
mesh_router_firewall() {
  lab_nft "$1" <<EOF
table inet knit_lab_fw {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "$2" ct state new drop
  }
}
EOF
}

# ---------------------------------------------------------------------------------------------
# coordinator
# ---------------------------------------------------------------------------------------------

mesh_coordinator() { "$KNIT_BIN/knit-coordinator" --state-dir "$MESH_COORD_STATE" "$@"; }

mesh_coordinator_start() {
  local label=${1:-coord}
  mesh__need_tools
  [[ -z "$MESH_COORD_PID" ]] || lab_fail "mesh_coordinator_start: the coordinator runs already"
  if [[ -z "$MESH_COORD_NS" ]]; then
    lab_core_host "$label"
    MESH_COORD_NS=$(lab_host_ns "$label")
    MESH_COORD_ADDR="$(lab_host_addr "$label"):7443"
    MESH_COORD_STATE="$LAB_DIR/state/coordinator"
  fi
  lab_bg coordinator "$MESH_COORD_NS" "$KNIT_BIN/knit-coordinator" --state-dir "$MESH_COORD_STATE" \
    serve --listen "$MESH_COORD_ADDR"
  MESH_COORD_PID=$LAB_BG_LAST
  local host=${MESH_COORD_ADDR%:*}
  host=${host#[} host=${host%]}  # "[v6]:port" too
  lab_wait_for 10 "the coordinator to listen on $MESH_COORD_ADDR" \
    ip netns exec "$MESH_COORD_NS" nc -z -w 1 "$host" "${MESH_COORD_ADDR##*:}"
  lab_log "knit-coordinator (pid $MESH_COORD_PID) serves $MESH_COORD_ADDR"
}

# mesh_token [ARGS...] — a new reusable node token (extra ARGS go to `token create`).
# shellcheck disable=SC2120
mesh_token() {
  local t
  t=$(mesh_coordinator token create --reusable --advertise "$MESH_COORD_ADDR" "$@" | tail -n 1) \
    || lab_fail "knit-coordinator token create failed"
  [[ "$t" == knit1-* ]] || lab_fail "token create did not print a token as its last line: '$t'"
  lab_secret_add token "$t"
  printf '%s\n' "$t"
}

# ---------------------------------------------------------------------------------------------
# relays
# ---------------------------------------------------------------------------------------------

mesh__relay_online() {
  mesh_coordinator relays list --json 2>/dev/null \
    | jq -e --arg n "$1" --argjson p "$MESH_STUN_PORT" 'any(.[]; .name == $n and .online == true and .stun_port == $p)'
}

mesh_relay_start() {
  local name=$1 ns addr state
  local -a token_arg=()
  [[ -n "$MESH_COORD_PID" ]] || lab_fail "mesh_relay_start: start the coordinator first"
  [[ -z "${MESH_RELAY_PID[$name]:-}" ]] || lab_fail "mesh_relay_start: relay $name runs already"
  if [[ -z "${MESH_RELAY_NS[$name]:-}" ]]; then
    lab_core_host "$name"
    MESH_RELAY_NS[$name]=$(lab_host_ns "$name")
    MESH_RELAY_ADDR[$name]=$(lab_host_addr "$name")
  fi
  ns=${MESH_RELAY_NS[$name]} addr=${MESH_RELAY_ADDR[$name]}
  state="$LAB_DIR/state/relay-$name"
  if [[ ! -d "$state" ]]; then
    local t
    t=$(mesh_coordinator token create --relay --advertise "$MESH_COORD_ADDR" | tail -n 1) \
      || lab_fail "knit-coordinator token create --relay failed"
    [[ "$t" == knit1-* ]] || lab_fail "token create --relay did not print a token: '$t'"
    lab_secret_add token "$t"
    token_arg=(--token "$t")
  fi
  lab_bg "relay-$name" "$ns" env --default-signal=INT "$KNIT_BIN/knit-relay" "${token_arg[@]}" \
    --name "$name" --listen "$addr:$MESH_RELAY_PORT" --stun "$addr:$MESH_STUN_PORT" --state-dir "$state"
  MESH_RELAY_PID[$name]=$LAB_BG_LAST
  if ! lab_poll 15 mesh__relay_online "$name"; then
    lab__alive "${MESH_RELAY_PID[$name]}" || lab_fail "knit-relay $name exited: $(tail -n 5 "$LAB_DIR/logs/relay-$name.log" | tr '\n' ' ')"
    lab_fail "knit-relay $name is not listed online (with STUN port $MESH_STUN_PORT) by \`relays list\` after 15 s: $(mesh_coordinator relays list --json | tr -d '\n ')"
  fi
  lab_log "knit-relay $name (pid ${MESH_RELAY_PID[$name]}) serves $addr:$MESH_RELAY_PORT (TCP), STUN on $addr:$MESH_STUN_PORT; online in the relay map"
}

mesh_relay_stop() {
  local name=$1 pid=${MESH_RELAY_PID[$1]:-}
  [[ -n "$pid" ]] || lab_fail "mesh_relay_stop: relay $name is not running"
  lab__reap "$pid" 10 TERM
  unset "MESH_RELAY_PID[$name]"
  (( LAB_REAP_FORCED == 0 )) || lab_fail "knit-relay $name did not exit within 10 s of SIGTERM"
  (( LAB_REAP_RC == 0 )) || lab_fail "knit-relay $name exited with status $LAB_REAP_RC after SIGTERM"
}

# ---------------------------------------------------------------------------------------------
# agents
# ---------------------------------------------------------------------------------------------

mesh_agent_start() {
  local label=$1 ns=$2 ifn
  shift 2
  [[ "$label" =~ ^[a-z][a-z0-9]{0,6}$ ]] || lab_fail "mesh_agent_start: label '$label' must be 1-7 of [a-z0-9], a letter first"
  [[ -z "${MESH_AGENT_IF[$label]:-}" ]] || lab_fail "mesh_agent_start: agent $label exists already"
  ifn=$(lab_name "k$label")
  lab_wg_start knitd "$ns" "$ifn" "$@"
  MESH_AGENT_NS[$label]=$ns
  MESH_AGENT_IF[$label]=$ifn
  MESH_AGENTS+=("$label")
}

mesh_agent_stop() {
  local label=$1 keep=() a
  lab_wg_stop "${MESH_AGENT_IF[$label]}" "${2:-TERM}"
  for a in "${MESH_AGENTS[@]}"; do [[ "$a" != "$label" ]] && keep+=("$a"); done
  MESH_AGENTS=("${keep[@]}")
  unset "MESH_AGENT_IF[$label]" "MESH_IP[$label]" "MESH_UP_US[$label]"
}

mesh_knit() {
  local label=$1
  shift
  ip netns exec "${MESH_AGENT_NS[$label]}" "$KNIT_BIN/knit" \
    --socket "$LAB_DIR/state/${MESH_AGENT_IF[$label]}/knitd.sock" "$@"
}

mesh_agent_up() {
  local label=$1 token=${2:-} out
  if [[ -z "$token" ]]; then
    [[ -n "$MESH_TOKEN" ]] || MESH_TOKEN=$(mesh_token)
    token=$MESH_TOKEN
  fi
  out=$(mesh_knit "$label" up --token "$token" --hostname "$label" 2>&1) \
    || lab_fail "knit up on $label failed: $out"
  # shellcheck disable=SC2034  # read by the scripts that time things
  MESH_UP_US[$label]=$(mesh_now_us)
  MESH_IP[$label]=$(mesh_self "$label" ipv4 2>&1) || lab_fail "knit status --json on $label failed: ${MESH_IP[$label]}"
  [[ "${MESH_IP[$label]}" =~ ^[0-9.]+$ ]] || lab_fail "$label has no mesh IPv4: '${MESH_IP[$label]}'"
  lab_log "agent $label joined as ${MESH_IP[$label]} (${MESH_AGENT_NS[$label]})"
}

mesh_agent_down() { mesh_knit "$1" down >/dev/null || lab_fail "knit down on $1 failed"; }

mesh_ip() { printf '%s\n' "${MESH_IP[$1]}"; }
mesh_agents() { printf '%s\n' "${MESH_AGENTS[@]}"; }

# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------

mesh_status() { mesh_knit "$1" status --json; }

mesh_peer() {
  mesh_status "$1" | jq -r --arg n "$2" --arg f "$3" 'first(.peers[] | select(.name == $n) | .[$f]) // "null"'
}

mesh_self() { mesh_status "$1" | jq -r --arg f "$2" '.self[$f]'; }

mesh_path() {
  local p
  p=$(mesh_status "$1" | jq -r --arg n "$2" '[.peers[] | select(.name == $n) | .path][0] // "missing"') || p=error
  printf '%s\n' "$p"
}

mesh_paths() { mesh_status "$1" | jq -r '.peers[] | "\(.name) \(.path)"'; }

mesh_sees_all() {
  local label=$1 want=() a
  for a in "${MESH_AGENTS[@]}"; do [[ "$a" != "$label" ]] && want+=("$a"); done
  mesh_status "$label" | jq -e --args '[.peers[] | select(.online == true) | .name] as $on
      | all($ARGS.positional[]; . as $w | $on | index($w) != null)' "${want[@]}" >/dev/null
}

mesh_wait_full() {
  local t=$1 a
  for a in "${MESH_AGENTS[@]}"; do
    lab_wait_for "$t" "agent $a to see all ${#MESH_AGENTS[@]} agents online" mesh_sees_all "$a"
  done
}

mesh__path_is() { [[ "$(mesh_path "$1" "$2")" == "$3" ]]; }
mesh_wait_path() {
  lab_poll "$1" mesh__path_is "$2" "$3" "$4" \
    || lab_fail "timed out after ${1}s waiting for $2's path to $3 to be $4 (it is $(mesh_path "$2" "$3"))"
}

mesh_ping_once() {
  ip netns exec "${MESH_AGENT_NS[$1]}" ping -c 1 -W "${3:-1}" -n -q "${MESH_IP[$2]}" >/dev/null 2>&1
}

mesh_ping() {
  lab_poll "${3:-10}" mesh_ping_once "$1" "$2" \
    || lab_fail "ping from $1 to $2 (${MESH_IP[$2]}) through the mesh got no answer within ${3:-10}s (path: $(mesh_path "$1" "$2"))"
}

# mesh_agent_log LABEL — knitd's log file of agent LABEL (lab_wg_start names it after the TUN).
mesh_agent_log() { printf '%s\n' "$LAB_DIR/logs/knitd-${MESH_AGENT_IF[$1]}.log"; }

# mesh_shutdown_counter NAME LOG... — the sum over the logs of counter NAME in each knitd's last
# shutdown line (NAME=value); fails when a log has none (the agent was not stopped).
mesh_shutdown_counter() {
  local name=$1 n=0 f c
  shift
  for f in "$@"; do
    c=$(grep -o "$name=[0-9]*" "$f" | tail -n 1 | cut -d= -f2)
    [[ -n "$c" ]] || lab_fail "no shutdown counter $name in $f"
    n=$((n + c))
  done
  printf '%s\n' "$n"
}
