#!/usr/bin/env bash
# Fault: a bad underlay. 5% loss, 5% duplication and reordering (tc netem, with 10 +- 5 ms of
# jitter, on both agents' links; where the kernel has no netem, as on this project's CI
# machines, the same is made in the core router: nftables drops 5% and duplicates 5% of the
# agents' UDP (numgen random, dup to), and sends 5% through a slow HTB class (meta priority),
# which reorders them behind the rest); a 20 MiB TCP transfer through the tunnel must complete with a
# matching sha256, and `knit status` must stay truthful the whole time: the peer online, the
# path "direct" or "relay" (never "none"), a direct path's endpoint the peer's real address,
# traffic counters that only grow and, at the end, account for the 20 MiB.
#
#   [kn-coord-SFX] knit-coordinator 192.0.2.1   [kn-ra-SFX] knit-relay ra 192.0.2.17
#                         \                          /
#                          +----- [kn-core-SFX] ----+
#                         /       "the internet"     \
#   [kn-a1-SFX] knitd a1 192.0.2.33             [kn-a2-SFX] knitd a2 192.0.2.49
#    a10-SFX: netem loss 5% duplicate 5%         a20-SFX: the same
#             reorder 5% delay 10ms 5ms
#
# Prints the transfer time, how often the path changed and the retransmission picture.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/mesh.sh"
lab_init ping jq tc nft

MB=${LAB_MB:-20}
NETEM=(delay 10ms 5ms loss 5% duplicate 5% reorder 5% 50%)

lab_step "topology: a coordinator, a relay and two agents on the core"
lab_nat_core
mesh_coordinator_start
mesh_relay_start ra
lab_core_host a1
lab_core_host a2
mesh_agent_start a1 "$(lab_host_ns a1)"
mesh_agent_start a2 "$(lab_host_ns a2)"
mesh_agent_up a1
mesh_agent_up a2
mesh_wait_full 20
mesh_wait_path 20 a1 a2 direct
# Both views, before judging them: a2 may still be proving its side (or waiting for the relay to
# hear of it) a moment after a1 has; the transfer's samples would call that a lie.
mesh_wait_path 20 a2 a1 direct
A2_UL=$(lab_host_addr a2)
lab_pass "a1 -> a2 direct: $(mesh_peer a1 a2 endpoint)"

A1_UL=$(lab_host_addr a1)
core_dev_to() { ip -n "$LAB_CORE" -o route get "$1" | sed -n 's/.* dev \([^ ]*\).*/\1/p'; }
# impair_core — 5% loss, 5% duplication, 5% reordering of the agents' UDP, made in the core.
impair_core() {
  local d1 d2 d
  d1=$(core_dev_to "$A1_UL") d2=$(core_dev_to "$A2_UL")
  for d in "$d1" "$d2"; do
    ip netns exec "$LAB_CORE" tc qdisc add dev "$d" root handle 1: htb default 10 || lab_fail "htb on $d"
    ip netns exec "$LAB_CORE" tc class add dev "$d" parent 1: classid 1:10 htb rate 1gbit
    ip netns exec "$LAB_CORE" tc class add dev "$d" parent 1: classid 1:20 htb rate 4mbit ceil 4mbit
  done
  lab_nft "$LAB_CORE" <<EOF
table ip kimpair {
  chain forward {
    type filter hook forward priority -5; policy accept;
    ip saddr $A1_UL ip daddr $A2_UL meta l4proto udp numgen random mod 100 < 5 counter drop
    ip saddr $A2_UL ip daddr $A1_UL meta l4proto udp numgen random mod 100 < 5 counter drop
    ip saddr $A1_UL ip daddr $A2_UL meta l4proto udp numgen random mod 100 < 5 counter dup to $A2_UL device "$d2"
    ip saddr $A2_UL ip daddr $A1_UL meta l4proto udp numgen random mod 100 < 5 counter dup to $A1_UL device "$d1"
  }
  chain postrouting {
    type filter hook postrouting priority 0; policy accept;
    ip saddr $A1_UL ip daddr $A2_UL meta l4proto udp numgen random mod 100 < 5 counter meta priority set 1:20
    ip saddr $A2_UL ip daddr $A1_UL meta l4proto udp numgen random mod 100 < 5 counter meta priority set 1:20
  }
}
EOF
  IMPAIRED_DEVS=("$d1" "$d2")
}
unimpair_core() {
  local d
  ip netns exec "$LAB_CORE" nft delete table ip kimpair
  for d in "${IMPAIRED_DEVS[@]}"; do ip netns exec "$LAB_CORE" tc qdisc del dev "$d" root; done
}

MODE=netem
if ip netns exec "$(lab_host_ns a1)" tc qdisc add dev "$(lab_name a10)" root netem "${NETEM[@]}" 2>/dev/null; then
  lab_step "netem on both underlay links: ${NETEM[*]}"
  ip netns exec "$(lab_host_ns a2)" tc qdisc add dev "$(lab_name a20)" root netem "${NETEM[@]}" \
    || lab_fail "tc netem on a2"
  lab_log "$(ip netns exec "$(lab_host_ns a1)" tc qdisc show dev "$(lab_name a10)")"
else
  MODE=core
  lab_step "no netem in this kernel: 5% loss, duplication and reordering of the agents' UDP in the core (nftables + HTB)"
  impair_core
fi

# truthful LABEL PEER — one status sample: fails the test on a lie, logs the path.
declare -A LAST_RX=() LAST_TX=()
FLAPS=0 LAST_PATH=""
truthful() {
  local s online path ep rx tx
  s=$(mesh_status "$1" | jq -c --arg n "$2" 'first(.peers[] | select(.name == $n))') \
    || lab_fail "knit status on $1 failed under loss"
  online=$(jq -r .online <<<"$s") path=$(jq -r .path <<<"$s") ep=$(jq -r .endpoint <<<"$s")
  rx=$(jq -r .rx_bytes <<<"$s") tx=$(jq -r .tx_bytes <<<"$s")
  [[ "$online" == true ]] || lab_fail "$1's status says $2 is offline during the transfer: $s"
  [[ "$path" == direct || "$path" == relay ]] || lab_fail "$1's status says path '$path' to $2 while traffic flows: $s"
  if [[ "$path" == direct && "$1" == a1 ]]; then
    [[ "$ep" == "$A2_UL:"* ]] || lab_fail "$1's direct endpoint for $2 is '$ep', not $A2_UL:*: $s"
  fi
  (( rx >= ${LAST_RX[$1]:-0} && tx >= ${LAST_TX[$1]:-0} )) \
    || lab_fail "$1's counters for $2 went backwards: rx ${LAST_RX[$1]:-0} -> $rx, tx ${LAST_TX[$1]:-0} -> $tx"
  LAST_RX[$1]=$rx LAST_TX[$1]=$tx
  if [[ "$1" == a1 && "$path" != "$LAST_PATH" ]]; then
    [[ -n "$LAST_PATH" ]] && FLAPS=$((FLAPS + 1))
    lab_log "a1 -> a2 path: $path ($ep)"
    LAST_PATH=$path
  fi
}

lab_step "$MB MiB from a1 to a2 through the tunnel, status sampled every second"
FILE=$(lab_data_file "$MB")
lab_tcp_start xfer "$(lab_host_ns a1)" "$(lab_host_ns a2)" "$(mesh_ip a2)" 5001 "$FILE"
for ((i = 0; i < 240; i++)); do
  truthful a1 a2
  truthful a2 a1
  lab__alive "${LAB_TCP_SPID[xfer]}" || break
  sleep 1
done
lab_tcp_finish xfer 240
truthful a1 a2
truthful a2 a1
(( LAST_TX[a1] >= MB * 1048576 )) || lab_fail "a1 counts only ${LAST_TX[a1]} bytes sent to a2 after $MB MiB went through"
(( LAST_RX[a2] >= MB * 1048576 )) || lab_fail "a2 counts only ${LAST_RX[a2]} bytes received from a1 after $MB MiB went through"
lab_pass "status stayed truthful: a1 tx ${LAST_TX[a1]} B, a2 rx ${LAST_RX[a2]} B; the path changed $FLAPS times"
if [[ "$MODE" == netem ]]; then
  ip netns exec "$(lab_host_ns a1)" tc -s qdisc show dev "$(lab_name a10)" | sed 's/^/    /'
else
  ip netns exec "$LAB_CORE" nft list table ip kimpair | grep -E 'drop|dup|priority set' | sed 's/^/    /'
  ip netns exec "$LAB_CORE" tc -s class show dev "${IMPAIRED_DEVS[0]}" | grep -A1 '1:20' | sed 's/^/    /'
fi

lab_step "impairment off: the mesh is whole"
if [[ "$MODE" == netem ]]; then
  for a in a1 a2; do ip netns exec "$(lab_host_ns "$a")" tc qdisc del dev "$(lab_name "${a}0")" root; done
else
  unimpair_core
fi
mesh_wait_path 30 a1 a2 direct
mesh_ping a1 a2 5
lab_pass "20 MiB crossed 5% loss, duplication and reordering intact; knit status never lied"
