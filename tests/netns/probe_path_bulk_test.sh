#!/usr/bin/env bash
# A bulk transfer over a direct path that runs through a probe socket (issue 14: "the mesh path
# keeps all of it"). A port-restricted cone and a symmetric NAT can only go direct by port
# prediction: the symmetric side sends from a set of extra sockets (agent/probe_sockets.hpp),
# one of whose mappings the cone side's probes find, and the WireGuard traffic then uses that
# socket. The nat_grid pings such pairs; this moves data over one.
#
#   [kn-coord-SFX] coordinator   [kn-ra-SFX] knit-relay ra (the only relay)
#                \_______________________|
#                               [kn-core-SFX]
#              ___________________/       \____________________
#   [kn-prcr-SFX] kernel masquerade           [kn-skr-SFX] kernel masquerade random
#   port-restricted cone, WAN firewall        symmetric, WAN firewall
#   [kn-prch1-SFX] knitd "prc"                [kn-skh1-SFX] knitd "sk"
#
# The symmetric router drops what sk's main socket sends to the cone site: its mapping toward the
# cone site is one more port a birthday search can hit (about 1 run in 257 went direct through it), and
# this test is about the probe sockets' path.
#
# Checks: the pair ends on a direct path (both sides' status); 20 MiB each way over TCP with
# sha256; and the wire: on the symmetric site's router, the WireGuard data packets the host sent
# (UDP, first payload byte 4, over 1000 bytes; a UDP_SEGMENT train counts once) came almost all from
# ports other than knitd's main
# socket's, i.e. from a probe socket. Knobs: PROBE_BULK_MB (default 20).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lab/mesh.sh"
lab_init ping nft jq nc
MB=${PROBE_BULK_MB:-20}

lab_step "the lab: one relay, a port-restricted cone site and a symmetric site"
lab_nat_core
mesh_coordinator_start
mesh_relay_start ra
lab_site_kernel prc port-restricted
lab_site_kernel sk symmetric
for rw in prcr:prcw skr:skw; do mesh_router_firewall "$(lab_ns "${rw%%:*}")" "$(lab_name "${rw#*:}")"; done
PRC=$(lab_site_host prc) SK=$(lab_site_host sk)
SKR=$(lab_site_router sk)

mesh_agent_start prc "$PRC"
mesh_agent_start sk "$SK"
MAIN_PORT=$(lab_wg "${MESH_AGENT_IF[sk]}" show listen-port)
[[ "$MAIN_PORT" =~ ^[0-9]+$ ]] || lab_fail "cannot read sk's listen port: '$MAIN_PORT'"
# WireGuard data (type 4) the symmetric host sends, counted by source port: its main socket, or
# any other (a probe socket). Then nothing from the main socket reaches the cone site (see above);
# STUN and the relay are elsewhere.
lab_nft "$SKR" <<EOF
table ip knit_lab_probe_bulk {
  chain forward {
    type filter hook forward priority filter - 20; policy accept;
    iifname "${LAB_SITE_LAN[sk]}" udp sport $MAIN_PORT @ih,0,8 4 meta length > 1000 counter
    iifname "${LAB_SITE_LAN[sk]}" udp sport != $MAIN_PORT @ih,0,8 4 meta length > 1000 counter
    iifname "${LAB_SITE_LAN[sk]}" udp sport $MAIN_PORT ip daddr $(lab_site_public prc) counter drop
  }
}
EOF
mesh_agent_up prc
mesh_agent_up sk
mesh_wait_full 20
lab_bg ping-sk "$SK" timeout 300 sh -c 'exec ping -n -q -i 0.5 -W 1 "$1" >/dev/null 2>&1' sh "$(mesh_ip prc)"
t0=$(mesh_now_us)
mesh_wait_path 60 sk prc direct
mesh_wait_path 20 prc sk direct
lab_pass "direct both ways after $(( ($(mesh_now_us) - t0) / 1000 )) ms: sk -> $(mesh_peer sk prc endpoint), prc -> $(mesh_peer prc sk endpoint) (sk's main socket: port $MAIN_PORT)"

lab_step "$MB MiB each way over the probe-socket path"
f=$(lab_data_file "$MB")
lab_tcp_start down "$PRC" "$SK" "$(mesh_ip sk)" 5001 "$f"
lab_tcp_start up "$SK" "$PRC" "$(mesh_ip prc)" 5002 "$f"
lab_tcp_finish down 90
lab_tcp_finish up 90
read -r main other dropped < <(ip netns exec "$SKR" nft list chain ip knit_lab_probe_bulk forward \
  | grep -o 'packets [0-9]*' | awk '{print $2}' | paste -sd' ')
lab_log "sk's WireGuard data packets over 1000 bytes on the wire: $main from the main socket, $other from other (probe) sockets; the router dropped $dropped packets from the main socket to the cone site"
[[ "$(mesh_path sk prc)" == direct && "$(mesh_path prc sk)" == direct ]] \
  || lab_fail "the pair left the direct path during the transfer: sk $(mesh_path sk prc), prc $(mesh_path prc sk)"
(( other > 0 && other >= 9 * main )) \
  || lab_fail "the bulk data did not go through a probe socket: $main packets from the main socket, $other from others"
lab_pass "$MB MiB both ways, sha256 matching; $other of sk's full-size data packets left from a probe socket, $main from the main one"
