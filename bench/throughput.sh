#!/usr/bin/env bash
# TCP throughput through knitd <-> knitd and wireguard-go <-> wireguard-go, on the same two
# namespaces and measured the same way (iperf3, A -> B), with the bare veth as a baseline: one
# stream for each, four streams for knitd and wireguard-go, and iperf3 UDP at a fixed offered
# load (--udp-rate) with the loss it saw; and one stream between two knitd agents of a mesh
# whose direct UDP is blocked, so that it runs through knit-relay. For the tunnels, the CPU time
# (user + sys) the daemons spent per gigabit moved (both knitd, and knit-relay on the relay
# path). Prints numbers, not pass/fail.
#
#   [kn-ba-SFX]                                          [kn-bb-SFX]
#    iperf3 client                                        iperf3 server (one per run)
#    wggo  on ga-SFX 10.77.1.1/24 udp 51820 ... tunnel ... gb-SFX 10.77.1.2/24 udp 51820
#    knitd on ka-SFX 10.77.2.1/24 udp 51821 ... tunnel ... kb-SFX 10.77.2.2/24 udp 51821
#    a0-SFX 192.0.2.1/24 -------------- veth -------------- b0-SFX 192.0.2.2/24  (baseline)
#
#   the relay path (--impls ... relay): nat.sh's core router, UDP between pa and pb dropped
#    [kn-coord-SFX] knit-coordinator   [kn-rel-SFX] knit-relay "rel" (TCP 443)
#    [kn-pa-SFX] knitd "pa" (iperf3 client) --TCP--> knit-relay --TCP--> [kn-pb-SFX] knitd "pb"
#
# Both tunnels stay up for the whole run and the runs are interleaved (veth, wggo, knitd,
# veth, ...) so that load from elsewhere on the machine spreads evenly over the three.
#
# Usage: bench/throughput.sh [-t SECONDS] [-n RUNS] [--impls "knitd wggo"] [--no-baseline]
#                            [--udp-rate RATE]
#   -t, --duration SECONDS   length of each iperf3 run (default 10)
#   -n, --runs N             runs per path; the median is reported (default 3)
#   --impls LIST             which tunnels to measure (default "wggo knitd relay"; relay:
#                            knitd agents through knit-relay, needs knit, knit-coordinator
#                            and knit-relay next to knitd)
#   --no-baseline            skip the bare veth
#   --udp-rate RATE          offered load of the UDP runs, iperf3 -b syntax (default 500M);
#                            "0" skips them
# Environment: KNIT_BIN (folder holding knitd), as for the tests; KNIT_OFFLOADS=off and
# KNIT_CRYPTO_THREADS=N are passed on to knitd (KNIT_CRYPTO_THREADS=1: sealing and opening on
# the event loop alone, against the default of every core), and so are KNIT_RELAY_RUNS=off and
# KNIT_RELAY_SPLIT=off (the relay path with one split frame per packet, or whole frames).
set -euo pipefail

DURATION=10
RUNS=3
IMPLS="wggo knitd relay"
BASELINE=1
UDP_RATE=500M
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (( $# )); do
  case "$1" in
    -t|--duration) DURATION=$2; shift 2 ;;
    -n|--runs) RUNS=$2; shift 2 ;;
    --impls) IMPLS=$2; shift 2 ;;
    --no-baseline) BASELINE=0; shift ;;
    --udp-rate) UDP_RATE=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 ]] || { echo "--duration wants whole seconds >= 1" >&2; exit 2; }
[[ "$RUNS" =~ ^[0-9]+$ && "$RUNS" -ge 1 ]] || { echo "--runs wants a count >= 1" >&2; exit 2; }

# Quiet daemons: logging is not what is measured.
LAB_WGGO_LOG_LEVEL=${LAB_WGGO_LOG_LEVEL:-error}
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/nat.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tests/lab/mesh.sh"
lab_init iperf3

declare -A LABEL=([veth]="veth, no tunnel" [wggo]="wireguard-go <-> wireguard-go" [knitd]="knitd <-> knitd"
                  [wggo4]="wireguard-go, 4 streams" [knitd4]="knitd, 4 streams"
                  [wggou]="wireguard-go, UDP $UDP_RATE" [knitdu]="knitd, UDP $UDP_RATE"
                  [relay]="knitd through knit-relay, 1 stream")
declare -A ADDR_B=([veth]=192.0.2.2 [wggo]=10.77.1.2 [knitd]=10.77.2.2)
declare -A RESULTS=() CPU=() LOSS=() IFS_OF=() PIDS_OF=() NS_A=() NS_B=()
PATHS=()
(( BASELINE )) && PATHS+=(veth)

lab_ns_add ba; A=$(lab_ns ba)
lab_ns_add bb; B=$(lab_ns bb)
lab_veth "$A" "$(lab_name a0)" 192.0.2.1/24 "$B" "$(lab_name b0)" 192.0.2.2/24

# start_relay_path — a coordinator, one knit-relay and two agents on nat.sh's core, with UDP
# between the agents dropped by the core router, so their only path is the relay.
start_relay_path() {
  local t
  for t in knit knit-coordinator knit-relay; do
    [[ -x "$KNIT_BIN/$t" ]] || { lab_log "$KNIT_BIN/$t is missing: the relay path is not measured"; RESULTS[relay]="n/a"; return; }
  done
  lab_nat_core
  mesh_coordinator_start
  mesh_relay_start rel
  lab_core_host pa; lab_core_host pb
  lab_nft "$LAB_CORE" <<EOF
table inet kbench_block {
  chain drop_udp {
    type filter hook forward priority -10;
    ip saddr $(lab_host_addr pa) ip daddr $(lab_host_addr pb) meta l4proto udp drop
    ip saddr $(lab_host_addr pb) ip daddr $(lab_host_addr pa) meta l4proto udp drop
  }
}
EOF
  mesh_agent_start pa "$(lab_host_ns pa)"
  mesh_agent_start pb "$(lab_host_ns pb)"
  mesh_agent_up pa; mesh_agent_up pb
  mesh_wait_full 30
  mesh_wait_path 30 pa pb relay
  mesh_wait_path 30 pb pa relay
  mesh_ping pa pb 15
  NS_A[relay]=$(lab_host_ns pa); NS_B[relay]=$(lab_host_ns pb)
  ADDR_B[relay]=$(mesh_ip pb)
  IFS_OF[relay]="${MESH_AGENT_IF[pa]} ${MESH_AGENT_IF[pb]}"
  PIDS_OF[relay]=${MESH_RELAY_PID[rel]}
  PATHS+=(relay)
}

port=51820
for impl in $IMPLS; do
  [[ "$impl" == relay ]] && { start_relay_path; continue; }
  case "$impl" in
    wggo)  net=1 p=g ;;
    knitd) net=2 p=k ;;
    *) lab_fail "unknown implementation '$impl' in --impls (want knitd, wggo, relay)" ;;
  esac
  if ! lab_impl_available "$impl"; then
    lab_log "$impl is not available (knitd looked for at $KNIT_BIN/knitd); not measured"
    RESULTS[$impl]="n/a"
    continue
  fi
  ia=$(lab_name "${p}a"); ib=$(lab_name "${p}b")
  lab_wg_start "$impl" "$A" "$ia"
  lab_wg_start "$impl" "$B" "$ib"
  lab_wg_setup "$ia" "$port" "10.77.$net.1/24"
  lab_wg_setup "$ib" "$port" "10.77.$net.2/24"
  lab_wg_link "$ia" 192.0.2.1 "$ib" 192.0.2.2
  lab_ping "$A" "10.77.$net.2" 10
  IFS_OF[$impl]="$ia $ib"
  PATHS+=("$impl" "${impl}4")
  [[ "$UDP_RATE" != 0 ]] && PATHS+=("${impl}u")
  port=$((port + 1))
done

# cpu_ticks IMPL -> the user + sys clock ticks the daemons of IMPL (both tunnel ends, and
# knit-relay on the relay path) have used so far
cpu_ticks() {
  local t=0 ifn pid pids=()
  for ifn in ${IFS_OF[$1]}; do pids+=("${LAB_WG_PID[$ifn]}"); done
  for pid in ${PIDS_OF[$1]:-}; do pids+=("$pid"); done
  for pid in "${pids[@]}"; do
    # fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the command name
    t=$((t + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
  done
  echo "$t"
}

# measure PATH RUN -> MBPS = Mbit/s received by the server, CPUG = CPU seconds of the two
# daemons per gigabit, LOSSP = UDP loss in percent (runs in the main shell: it starts a helper
# that the lab must know about)
measure() {
  local path=$1 run=$2 impl=${1%[4u]} args=() out before after
  local addr=${ADDR_B[$impl]} ns_a=${NS_A[$impl]:-$A} ns_b=${NS_B[$impl]:-$B}
  case "$path" in
    *4) args=(-P 4) ;;
    *u) args=(-u -b "$UDP_RATE" -l 1300) ;;
  esac
  lab_bg "iperf3-s-$path-$run" "$ns_b" timeout $((DURATION + 60)) iperf3 -s -1 -B "$addr" -p 5201
  local spid=$LAB_BG_LAST
  lab_wait_for 10 "iperf3 server on $addr in $ns_b" lab__listening "$ns_b" 5201
  [[ "$impl" != veth ]] && before=$(cpu_ticks "$impl")
  out=$(ip netns exec "$ns_a" timeout $((DURATION + 30)) iperf3 -c "$addr" -p 5201 -t "$DURATION" -f m "${args[@]}" 2>&1) \
    || lab_fail "iperf3 over $path failed: $out"
  [[ "$impl" != veth ]] && after=$(cpu_ticks "$impl")
  lab_bg_wait "$spid" 15
  # the receiver's total: the [SUM] line with several streams, the only line with one
  MBPS=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) } END { print v }' <<<"$out")
  [[ -n "$MBPS" ]] || lab_fail "no receiver line in iperf3 output over $path: $out"
  LOSSP=""
  if [[ "$path" == *u ]]; then
    LOSSP=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i ~ /^\([0-9.e+-]+%\)$/) { v = $i; gsub(/[()%]/, "", v) } } END { print v }' <<<"$out")
  fi
  CPUG=""
  if [[ "$impl" != veth ]]; then
    CPUG=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v m="$MBPS" -v d="$DURATION" \
      'BEGIN { if (m > 0) printf "%.2f", (t / hz) / (m * d / 1000); else print "n/a" }')
  fi
}

median() { tr ' ' '\n' | { grep . || true; } | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

lab_step "measuring: ${#PATHS[@]} paths x $RUNS runs x ${DURATION}s"
for ((r = 1; r <= RUNS; r++)); do
  for path in "${PATHS[@]}"; do
    measure "$path" "$r"
    RESULTS[$path]="${RESULTS[$path]:-} $MBPS"
    CPU[$path]="${CPU[$path]:-} $CPUG"
    LOSS[$path]="${LOSS[$path]:-} $LOSSP"
    lab_log "run $r/$RUNS ${LABEL[$path]}: $MBPS Mbit/s${CPUG:+, $CPUG CPU s/Gbit}${LOSSP:+, loss $LOSSP%} (load $(cut -d' ' -f1 /proc/loadavg))"
  done
done

echo
echo "Knit throughput: TCP A -> B (1 and 4 streams) and UDP at $UDP_RATE, iperf3, ${DURATION} s per run, median of $RUNS"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r), KNIT_OFFLOADS=${KNIT_OFFLOADS:-on}, KNIT_CRYPTO_THREADS=${KNIT_CRYPTO_THREADS:-default}, KNIT_RELAY_RUNS=${KNIT_RELAY_RUNS:-on}"
printf '%-34s %12s %12s %8s   %s\n' "path" "median Mbit/s" "CPU s/Gbit" "loss %" "runs"
for path in veth wggo knitd wggo4 knitd4 wggou knitdu relay; do
  [[ -n "${RESULTS[$path]:-}" ]] || continue
  printf '%-34s %12s %12s %8s   %s\n' "${LABEL[$path]}" "$(median <<<"${RESULTS[$path]}")" \
    "$(median <<<"${CPU[$path]:-}")" "$(median <<<"${LOSS[$path]:-}")" "${RESULTS[$path]# }"
done
for impl in wggo knitd relay; do
  [[ -n "${RESULTS[$impl]:-}" ]] || echo "${LABEL[$impl]}: n/a (not available)"
done
ratio() {
  [[ -n "${RESULTS[$1]:-}" && -n "${RESULTS[$2]:-}" ]] || { echo n/a; return; }
  awk -v k="$(median <<<"${RESULTS[$1]}")" -v g="$(median <<<"${RESULTS[$2]}")" 'BEGIN { if (g > 0) printf "%.2f", k / g; else print "n/a" }'
}
echo "ratio knitd / wireguard-go: 1 stream $(ratio knitd wggo), 4 streams $(ratio knitd4 wggo4)"
echo "ratio relay / direct (knitd through knit-relay / knitd <-> knitd, 1 stream): $(ratio relay knitd)"
