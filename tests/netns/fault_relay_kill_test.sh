#!/usr/bin/env bash
# Fault: the relay carrying a transfer is killed with -9. UDP between the two agents is blocked,
# so their traffic goes through a relay; in the middle of a 20 MiB TCP transfer inside the
# tunnel, the relay a1 is homed on dies without a word. The agents must re-home to the second
# relay and the transfer (one TCP connection inside the tunnel) must complete, sha256 intact.
#
#   [kn-coord-SFX] coordinator 192.0.2.1   [kn-ra-SFX] relay ra .17   [kn-rb-SFX] relay rb .33
#                        \                        |                        /
#                         +------------ [kn-core-SFX] (nft: UDP a1 <-> a2 dropped) ---+
#                        /                                                            \
#   [kn-a1-SFX] knitd a1 192.0.2.49                                [kn-a2-SFX] knitd a2 192.0.2.65
#
# Prints the re-homing time and when the transfer moved again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/mesh.sh"
lab_init ping jq nft

MB=${LAB_MB:-20}

lab_step "topology: a coordinator, relays ra and rb, two agents whose UDP to each other is dropped"
lab_nat_core
mesh_coordinator_start
mesh_relay_start ra
mesh_relay_start rb
lab_core_host a1
lab_core_host a2
A1_UL=$(lab_host_addr a1) A2_UL=$(lab_host_addr a2)
lab_nft "$LAB_CORE" <<EOF
table inet kblock {
  chain forward {
    type filter hook forward priority -10;
    ip saddr $A1_UL ip daddr $A2_UL meta l4proto udp drop
    ip saddr $A2_UL ip daddr $A1_UL meta l4proto udp drop
  }
}
EOF
mesh_agent_start a1 "$(lab_host_ns a1)"
mesh_agent_start a2 "$(lab_host_ns a2)"
mesh_agent_up a1
mesh_agent_up a2
mesh_wait_full 20
homed() { [[ "$(mesh_self a1 relay)" =~ ^r[ab]$ && "$(mesh_self a2 relay)" =~ ^r[ab]$ ]]; }
lab_wait_for 20 "both agents to have a home relay" homed
mesh_wait_path 20 a1 a2 relay
mesh_ping a1 a2 10
HOME=$(mesh_self a1 relay)
OTHER=ra; [[ "$HOME" == ra ]] && OTHER=rb
lab_pass "a1 -> a2 through the relay; a1's home relay $HOME, a2's $(mesh_self a2 relay)"

lab_step "$MB MiB from a1 to a2 (paced over ~10 s); relay $HOME killed with -9 after 3 s"
FILE=$(lab_data_file "$MB")
lab_tcp_start xfer "$(lab_host_ns a1)" "$(lab_host_ns a2)" "$(mesh_ip a2)" 5001 "$FILE" 256 0.12
sleep 3
received_before=$(stat -c %s "$LAB_DIR/data/recv-xfer.bin" 2>/dev/null || echo 0)
kill -KILL "${MESH_RELAY_PID[$HOME]}"
killed_us=$(mesh_now_us)
wait "${MESH_RELAY_PID[$HOME]}" 2>/dev/null || true
unset "MESH_RELAY_PID[$HOME]"
lab_log "killed $HOME with -9 after $received_before bytes had arrived"
rehomed() { [[ "$(mesh_self a1 relay)" == "$OTHER" && "$(mesh_self a2 relay)" == "$OTHER" ]]; }
lab_wait_for 20 "both agents to re-home to $OTHER" rehomed
rehome_ms=$(( ($(mesh_now_us) - killed_us) / 1000 ))
# The transfer moves again: bytes keep arriving.
grown() { (( $(stat -c %s "$LAB_DIR/data/recv-xfer.bin" 2>/dev/null || echo 0) > $1 )); }
now_bytes=$(stat -c %s "$LAB_DIR/data/recv-xfer.bin" 2>/dev/null || echo 0)
lab_wait_for 20 "the transfer to move again through $OTHER" grown "$now_bytes"
resume_ms=$(( ($(mesh_now_us) - killed_us) / 1000 ))
lab_pass "re-homed to $OTHER ${rehome_ms} ms after the kill; the transfer moved again after ${resume_ms} ms"
lab_tcp_finish xfer 180
[[ "$(mesh_path a1 a2)" == relay ]] || lab_fail "a1's path to a2 is $(mesh_path a1 a2), expected relay (UDP is still blocked)"
[[ "$(mesh_peer a1 a2 relay)" != "$HOME" ]] || lab_fail "a1 still names the dead relay $HOME as a2's relay"
mesh_ping a1 a2 5
lab_pass "relay kill -9 mid-transfer: $MB MiB intact through $OTHER (re-home ${rehome_ms} ms, resume ${resume_ms} ms)"
