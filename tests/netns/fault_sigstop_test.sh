#!/usr/bin/env bash
# Fault: knitd frozen. An agent behind a NAT whose UDP mappings live 30 s is stopped with
# SIGSTOP for 2 minutes (its NAT mapping, its relay connection and its sessions go stale), then
# continued. Its peer must be reachable again within 2 s and the path direct within 10 s.
# The only long test of the suite (LAB_STOP_SECONDS shortens it for local runs).
#
#   [kn-coord-SFX] coordinator 192.0.2.1   [kn-ra-SFX] relay ra 192.0.2.17
#                        \                   /
#                         [kn-core-SFX] ----+---- [kn-p-SFX] knitd p 192.0.2.33 (public)
#                              |
#            [kn-n1r-SFX] knit-natbox EIM/APDF --udp-timeout 30, public 203.0.113.1
#                              |
#            [kn-n1h1-SFX] knitd h 10.1.0.2     <- SIGSTOP for 120 s, then SIGCONT
#
# Prints the time from SIGCONT to the first answered ping each way and to a direct path.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/mesh.sh"
lab_init ping jq

STOP=${LAB_STOP_SECONDS:-120}

lab_step "topology: coordinator, relay, a public agent p and agent h behind a natbox (UDP timeout 30 s)"
lab_nat_core
mesh_coordinator_start
mesh_relay_start ra
lab_core_host p
lab_site_natbox n1 eim apdf --udp-timeout 30
mesh_agent_start p "$(lab_host_ns p)"
mesh_agent_start h "$(lab_site_host n1)"
mesh_agent_up p
mesh_agent_up h
mesh_wait_full 20
mesh_wait_path 30 h p direct
mesh_wait_path 30 p h direct
mesh_ping h p 5
lab_pass "h <-> p direct: $(mesh_peer p h endpoint) as p sees h"

lab_step "knitd h frozen (SIGSTOP) for $STOP s"
H_PID=$(lab_wg_pid "${MESH_AGENT_IF[h]}")
kill -STOP "$H_PID"
sleep "$STOP"
lab_log "natbox table before SIGCONT (h's mappings should have expired):"
lab_natbox_dump n1 | sed 's/^/    /' || true
kill -CONT "$H_PID"
cont_us=$(mesh_now_us)

# Both directions are timed at once: one poller per direction, 0.2 s apart.
reach_ms() {  # FROM TO -> ms until FROM's ping to TO was answered (or 30000)
  local t
  for ((t = 0; t < 150; t++)); do
    if mesh_ping_once "$1" "$2" 1; then echo $(( ($(mesh_now_us) - cont_us) / 1000 )); return; fi
    sleep 0.1
  done
  echo 30000
}
reach_ms h p >"$LAB_DIR/state/h2p" &
hp=$!
reach_ms p h >"$LAB_DIR/state/p2h" &
ph=$!
wait "$hp" "$ph" || true
h2p=$(cat "$LAB_DIR/state/h2p") p2h=$(cat "$LAB_DIR/state/p2h")
direct_ms=30000
for ((t = 0; t < 300; t++)); do
  if [[ "$(mesh_path h p)" == direct && "$(mesh_path p h)" == direct ]]; then
    direct_ms=$(( ($(mesh_now_us) - cont_us) / 1000 )); break
  fi
  sleep 0.1
done
lab_log "after SIGCONT: h reaches p in ${h2p} ms, p reaches h in ${p2h} ms, direct both ways after ${direct_ms} ms"
(( h2p <= 2000 )) || lab_fail "h reached its peer p only ${h2p} ms after SIGCONT (want <= 2000)"
(( p2h <= 2000 )) || lab_fail "p reached h only ${p2h} ms after SIGCONT (want <= 2000)"
(( direct_ms <= 10000 )) || lab_fail "the path h <-> p was direct again only after ${direct_ms} ms (want <= 10000; now h: $(mesh_path h p), p: $(mesh_path p h))"
lab_pass "frozen $STOP s behind a 30 s NAT: reachable after ${h2p}/${p2h} ms, direct after ${direct_ms} ms"
