# shellcheck shell=bash
# tests/lab/nat.sh — NAT topologies on top of lib.sh: an "internet" core, sites behind
# knit-natbox (any RFC 4787 mapping x filtering) or behind the kernel netfilter recipes of
# NAT.md, a double NAT (CGNAT), a site that blocks UDP, peers in the core, and coturn as an
# RFC 5780 STUN server with two addresses.
#
#     source "$(dirname "$0")/../lab/lib.sh"
#     source "$(dirname "$0")/../lab/nat.sh"
#     lab_init
#     lab_nat_core                          # core router, before anything else here
#     lab_stun_start                        # coturn on 198.51.100.1 and .2, ports 3478/3479
#     lab_core_host peer                    # a host "on the internet"
#     lab_site_natbox n1 eim apdf --hosts 2 --udp-timeout 5
#     ip netns exec "$(lab_site_host n1 1)" ping "$(lab_host_addr peer)"
#
# The picture (i = the site's index, 0..15; j = the core host's index, 0..15):
#
#                            [kn-stun-SFX]  coturn  A 198.51.100.1, B 198.51.100.2 (:3478, :3479)
#                                 | stun-SFX ... stunc-SFX 198.51.100.254/24
#   [kn-LABEL-SFX] ---------- [kn-core-SFX] "the internet" (forwards, no NAT) ---------- ...
#    core host j              |    core side of site i: 203.0.113.(16i+14)/28
#    192.0.2.(16j+1)/28       |
#    (core .16j+14)           | NAMEx-SFX ... NAMEw-SFX
#                       [kn-NAMEr-SFX] site router, public address 203.0.113.(16i+1):
#                             |    natbox: router 203.0.113.(16i+2), knit-natbox owns .16i+1
#                             |    kernel: the router's own address .16i+1, nftables NAT
#                             | NAMEbr-SFX 10.(i+1).0.1/24: a bridge, so the hosts share a LAN
#                  +----------+----------+
#        [kn-NAMEh1-SFX] 10.(i+1).0.2   [kn-NAMEh2-SFX] 10.(i+1).0.3 ...
#
#   double NAT (lab_site_double): [core] -- [kn-NAMEc-SFX] carrier NAT, public .16i+1, inside
#   100.64.(i+1).1/24 -- [kn-NAMEr-SFX] home NAT, WAN 100.64.(i+1).2 -- LAN 10.(i+1).0.0/24.
#
# Names: a site NAME is 1-3 characters [a-z0-9] (namespace labels stay within 5 characters,
# so every namespace and interface name fits in 15); a core host LABEL is 1-5 characters.
#
# Site kinds:
#   lab_site_natbox NAME MAPPING FILTERING [--hosts N] [knit-natbox flags: --hairpin, --udp-timeout S]
#   lab_site_kernel NAME port-restricted|symmetric|full-cone|restricted-cone [--port P] [--hairpin] [--hosts N]
#       port-restricted = masquerade (EIM/APDF); symmetric = masquerade random (APDM/APDF);
#       full-cone = + WAN dnat of UDP port P to host 1 (EIF for P); restricted-cone = full-cone's
#       dnat + a forward filter on contacted (host, port, remote address) (ADF for P);
#       --hairpin: LAN-side dnat of PUBLIC:P to host 1 + snat to PUBLIC (needs --port)
#   lab_site_double NAME        home NAT (masquerade) behind a carrier NAT (masquerade)
#   lab_site_udp_blocked NAME   masquerade, and the router drops every forwarded UDP packet
# Queries (safe in $(...)): lab_site_host NAME [K], lab_site_addr NAME [K], lab_site_public NAME,
#   lab_site_router NAME, lab_host_ns LABEL, lab_host_addr LABEL.
# Checks: lab_stun_mapped, lab_nat_discover, lab_udp_open/_send/_wait, lab_natbox_dump.
# Teardown: lab_natbox_stop NAME (checks the router is restored), lab_site_del NAME,
#   lab_stun_stop; anything left is removed by lib.sh's exit trap.

[[ -n "${LAB_NAT_LOADED:-}" ]] && return 0
LAB_NAT_LOADED=1
[[ -n "${LAB_LIB_LOADED:-}" ]] || { echo "nat.sh: source lib.sh first" >&2; exit 1; }

LAB_CORE=""
LAB_STUN_NS="" LAB_STUN_A=198.51.100.1 LAB_STUN_B=198.51.100.2 LAB_STUN_PID="" LAB_STUN_DIR=""
LAB_SITE_NEXT=0
LAB_HOST_NEXT=0
declare -gA LAB_SITE_IDX=() LAB_SITE_KIND=() LAB_SITE_ROUTER=() LAB_SITE_WAN=() LAB_SITE_LAN=()
declare -gA LAB_SITE_PUBLIC=() LAB_SITE_HOSTS=() LAB_SITE_ADDRS=() LAB_SITE_LABELS=()
declare -gA LAB_SITE_CORE_IF=() LAB_NATBOX_PID=() LAB_NATBOX_LOG=() LAB_NATBOX_RUNS=()
declare -gA LAB_HOST_NS=() LAB_HOST_ADDR=()

# ---------------------------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------------------------

lab_site_host() { local -a h; read -ra h <<<"${LAB_SITE_HOSTS[$1]}"; printf '%s\n' "${h[$(( ${2:-1} - 1 ))]}"; }
lab_site_addr() { local -a a; read -ra a <<<"${LAB_SITE_ADDRS[$1]}"; printf '%s\n' "${a[$(( ${2:-1} - 1 ))]}"; }
lab_site_public() { printf '%s\n' "${LAB_SITE_PUBLIC[$1]}"; }
lab_site_router() { printf '%s\n' "${LAB_SITE_ROUTER[$1]}"; }
lab_host_ns() { printf '%s\n' "${LAB_HOST_NS[$1]}"; }
lab_host_addr() { printf '%s\n' "${LAB_HOST_ADDR[$1]}"; }

# ---------------------------------------------------------------------------------------------
# the core, its hosts, the STUN server
# ---------------------------------------------------------------------------------------------

# lab_nat_core — the "internet": a router namespace that forwards and translates nothing.
lab_nat_core() {
  lab_require_tools ping nft
  [[ -z "$LAB_CORE" ]] || lab_fail "lab_nat_core: the core exists already"
  lab_router_add core
  LAB_CORE=$(lab_ns core)
}

lab__need_core() { [[ -n "$LAB_CORE" ]] || lab_fail "call lab_nat_core first"; }

# lab_core_host LABEL — a host on its own link to the core, 192.0.2.(16j+1)/28.
lab_core_host() {
  local label=$1 j ns hif cif
  lab__need_core
  [[ "$label" =~ ^[a-z0-9]{1,5}$ ]] || lab_fail "lab_core_host: label '$label' must be 1-5 of [a-z0-9]"
  [[ -z "${LAB_HOST_NS[$label]:-}" ]] || lab_fail "lab_core_host: $label exists already"
  j=$LAB_HOST_NEXT
  (( j < 16 )) || lab_fail "lab_core_host: at most 16 core hosts"
  LAB_HOST_NEXT=$(( j + 1 ))
  lab_ns_add "$label"; ns=$(lab_ns "$label")
  hif=$(lab_name "${label}0"); cif=$(lab_name "ch$j")
  lab_uplink "$ns" "$hif" "192.0.2.$(( 16 * j + 1 ))/28" "$LAB_CORE" "$cif" "192.0.2.$(( 16 * j + 14 ))/28"
  LAB_HOST_NS[$label]=$ns
  LAB_HOST_ADDR[$label]=192.0.2.$(( 16 * j + 1 ))
}

# lab_stun_start — coturn in its own namespace on two addresses (RFC 5780: A and B, ports 3478
# and 3479), pid file, log and database in a directory of this run; stopped on exit.
lab_stun_start() {
  lab__need_core
  lab_require_tools turnserver
  [[ -z "$LAB_STUN_PID" ]] || lab_fail "lab_stun_start: coturn runs already"
  lab_ns_add stun; LAB_STUN_NS=$(lab_ns stun)
  lab_veth "$LAB_STUN_NS" "$(lab_name stun)" "$LAB_STUN_A/24" "$LAB_CORE" "$(lab_name stunc)" 198.51.100.254/24
  lab_addr "$LAB_STUN_NS" "$(lab_name stun)" "$LAB_STUN_B/24"
  lab_route "$LAB_STUN_NS" default 198.51.100.254
  LAB_STUN_DIR="$LAB_DIR/state/coturn"
  mkdir -p "$LAB_STUN_DIR"
  lab_bg coturn "$LAB_STUN_NS" turnserver -n --stun-only --no-cli --no-tls --no-dtls \
    -L "$LAB_STUN_A" -L "$LAB_STUN_B" --listening-port 3478 --alt-listening-port 3479 \
    --pidfile "$LAB_STUN_DIR/turnserver.pid" --log-file "$LAB_STUN_DIR/turnserver.log" --simple-log \
    --db "$LAB_STUN_DIR/turndb" --no-software-attribute
  LAB_STUN_PID=$LAB_BG_LAST
  lab_wait_for 15 "coturn listening on $LAB_STUN_A and $LAB_STUN_B, UDP 3478 and 3479" lab__stun_ready
  lab_log "coturn (pid $LAB_STUN_PID) serves STUN on $LAB_STUN_A and $LAB_STUN_B, ports 3478/3479"
}
lab__stun_ready() {
  lab__alive "$LAB_STUN_PID" || return 1
  local n
  n=$(ip netns exec "$LAB_STUN_NS" ss -Hlun | grep -cE "($LAB_STUN_A|$LAB_STUN_B):(3478|3479) ")
  (( n >= 4 ))
}

# lab_stun_stop — stops coturn and checks it went (and left no listener behind).
lab_stun_stop() {
  [[ -n "$LAB_STUN_PID" ]] || lab_fail "lab_stun_stop: coturn is not running"
  lab__reap "$LAB_STUN_PID" 5 TERM
  (( LAB_REAP_FORCED )) && lab_fail "coturn did not exit within 5 s of SIGTERM"
  [[ -z "$(ip netns exec "$LAB_STUN_NS" ss -Hlun 2>/dev/null)" ]] || lab_fail "coturn left UDP listeners behind"
  LAB_STUN_PID=""
  lab_log "coturn stopped"
}

# ---------------------------------------------------------------------------------------------
# sites
# ---------------------------------------------------------------------------------------------

# lab__site_new NAME KIND WAN_HOST [SUFFIX] — a router namespace NAME+SUFFIX (default "r")
# with its WAN link to the core, 203.0.113.(16i+WAN_HOST)/28; fills the LAB_SITE_* entries.
lab__site_new() {
  local name=$1 kind=$2 wan_host=$3 suffix=${4:-r} i r wan cif
  lab__need_core
  [[ "$name" =~ ^[a-z0-9]{1,3}$ ]] || lab_fail "site name '$name' must be 1-3 of [a-z0-9]"
  [[ -z "${LAB_SITE_KIND[$name]:-}" ]] || lab_fail "site $name exists already"
  i=$LAB_SITE_NEXT
  (( i < 16 )) || lab_fail "at most 16 sites per run"
  LAB_SITE_NEXT=$(( i + 1 ))
  LAB_SITE_IDX[$name]=$i
  LAB_SITE_KIND[$name]=$kind
  LAB_SITE_LABELS[$name]=""
  lab__site_ns "$name" "$name$suffix"; r=$(lab_ns "$name$suffix")
  LAB_SITE_ROUTER[$name]=$r
  wan=$(lab_name "${name}w"); cif=$(lab_name "${name}x")
  lab_veth "$r" "$wan" "203.0.113.$(( 16 * i + wan_host ))/28" "$LAB_CORE" "$cif" "203.0.113.$(( 16 * i + 14 ))/28"
  lab_route "$r" default "203.0.113.$(( 16 * i + 14 ))"
  LAB_SITE_WAN[$name]=$wan
  LAB_SITE_CORE_IF[$name]=$cif
  LAB_SITE_PUBLIC[$name]=203.0.113.$(( 16 * i + 1 ))
}

# lab__site_ns NAME LABEL — a router namespace belonging to site NAME.
lab__site_ns() {
  lab_router_add "$2"
  LAB_SITE_LABELS[$1]+="$2 "
  # NAT.md: with br_netfilter loaded, bridged frames would meet netfilter; keep them out.
  local k
  for k in call-iptables call-arptables; do
    [[ -e /proc/sys/net/bridge/bridge-nf-$k ]] && ip netns exec "$(lab_ns "$2")" sysctl -qw "net.bridge.bridge-nf-$k=0" 2>/dev/null
  done
  return 0
}

# lab__site_lan NAME ROUTER_NS HOSTS — bridge NAMEbr with 10.(i+1).0.1/24 in ROUTER_NS and
# HOSTS host namespaces on it (10.(i+1).0.(k+1)), each with the router as default gateway.
lab__site_lan() {
  local name=$1 r=$2 n=$3 i k br hns hif pif net
  i=${LAB_SITE_IDX[$name]}
  net=10.$(( i + 1 )).0
  br=$(lab_name "${name}br")
  ip -n "$r" link add "$br" type bridge || lab_fail "cannot create bridge $br in $r"
  lab_addr "$r" "$br" "$net.1/24"
  ip -n "$r" link set "$br" up
  LAB_SITE_LAN[$name]=$br
  LAB_SITE_HOSTS[$name]=""
  LAB_SITE_ADDRS[$name]=""
  for ((k = 1; k <= n; k++)); do
    lab_ns_add "${name}h$k"; hns=$(lab_ns "${name}h$k")
    LAB_SITE_LABELS[$name]+="${name}h$k "
    hif=$(lab_name "${name}h$k"); pif=$(lab_name "${name}p$k")
    lab_veth "$hns" "$hif" "$net.$(( k + 1 ))/24" "$r" "$pif" -
    ip -n "$r" link set "$pif" master "$br" || lab_fail "cannot add $pif to bridge $br"
    lab_route "$hns" default "$net.1"
    LAB_SITE_HOSTS[$name]+="$hns "
    LAB_SITE_ADDRS[$name]+="$net.$(( k + 1 )) "
  done
  lab_wait_for 10 "host 1 of site $name to reach its router $net.1" \
    ip netns exec "$(lab_site_host "$name" 1)" ping -c1 -W1 -n "$net.1"
}

# lab__hosts_arg ARGS... — picks "--hosts N" out of ARGS; sets LAB__HOSTS and LAB__REST.
lab__take_hosts() {
  LAB__HOSTS=1 LAB__REST=()
  while (( $# )); do
    if [[ "$1" == --hosts ]]; then
      [[ "${2:-}" =~ ^[1-9]$ ]] || lab_fail "--hosts takes 1..9"
      LAB__HOSTS=$2; shift 2
    else
      LAB__REST+=("$1"); shift
    fi
  done
}

# lab_site_natbox NAME MAPPING FILTERING [--hosts N] [--own-address] [knit-natbox flags...]
# --own-address: the public address is the router's own WAN address (as on a home router),
# instead of a second address knit-natbox answers ARP for.
lab_site_natbox() {
  local name=$1 mapping=$2 filtering=$3 wan_host=2 a rest=()
  shift 3
  [[ -x "$KNIT_BIN/knit-natbox" ]] || lab_fail "knit-natbox not found at $KNIT_BIN/knit-natbox (build it, or set KNIT_BIN)"
  lab__take_hosts "$@"
  for a in "${LAB__REST[@]}"; do
    if [[ "$a" == --own-address ]]; then wan_host=1; else rest+=("$a"); fi
  done
  lab__site_new "$name" natbox "$wan_host"
  lab__site_lan "$name" "${LAB_SITE_ROUTER[$name]}" "$LAB__HOSTS"
  lab_natbox_start "$name" "$mapping" "$filtering" "${rest[@]}"
}

# lab_natbox_start NAME MAPPING FILTERING [flags...] — (re)starts knit-natbox on a natbox site;
# waits for its banner. The router's rules, routes and proxy entries are recorded first, so
# lab_natbox_stop can prove they come back exactly.
lab_natbox_start() {
  local name=$1 mapping=$2 filtering=$3 r log n
  shift 3
  [[ "${LAB_SITE_KIND[$name]:-}" == natbox ]] || lab_fail "lab_natbox_start: $name is not a natbox site"
  [[ -z "${LAB_NATBOX_PID[$name]:-}" ]] || lab_fail "lab_natbox_start: knit-natbox runs on $name already"
  r=${LAB_SITE_ROUTER[$name]}
  lab__router_snapshot "$name" >"$LAB_DIR/state/natbox-$name.before"
  n=$(( ${LAB_NATBOX_RUNS[$name]:-0} + 1 )); LAB_NATBOX_RUNS[$name]=$n
  log="natbox-$name-$n"
  lab_bg "$log" "$r" env --default-signal=INT "$KNIT_BIN/knit-natbox" \
    --inside "${LAB_SITE_LAN[$name]}" --outside "${LAB_SITE_WAN[$name]}" \
    --public-ip "${LAB_SITE_PUBLIC[$name]}" --mapping "$mapping" --filtering "$filtering" "$@"
  LAB_NATBOX_PID[$name]=$LAB_BG_LAST
  LAB_NATBOX_LOG[$name]="$LAB_DIR/logs/$log.log"
  lab_poll 10 lab__natbox_started "$name" || true
  if ! lab__alive "${LAB_NATBOX_PID[$name]}"; then
    wait "${LAB_NATBOX_PID[$name]}" 2>/dev/null && LAB_REAP_RC=0 || LAB_REAP_RC=$?
    unset "LAB_NATBOX_PID[$name]"
    lab_fail "knit-natbox on $name exited with status $LAB_REAP_RC: $(tail -n 5 "$LAB_DIR/logs/$log.log" | tr '\n' ' ')"
  fi
  grep -q '^natbox: .*, public ' "${LAB_NATBOX_LOG[$name]}" || lab_fail "knit-natbox on $name printed no banner within 10 s"
  lab_log "$(grep -m1 '^natbox: .*, public ' "${LAB_NATBOX_LOG[$name]}") [pid ${LAB_NATBOX_PID[$name]}]"
}
lab__natbox_started() {
  ! lab__alive "${LAB_NATBOX_PID[$1]}" && return 0
  grep -q '^natbox: .*, public ' "${LAB_NATBOX_LOG[$1]}"
}

# lab__router_snapshot NAME — what knit-natbox may touch on the site's router, as text.
lab__router_snapshot() {
  local r=${LAB_SITE_ROUTER[$1]} wan=${LAB_SITE_WAN[$1]}
  echo "# rules"; ip -n "$r" -4 rule show
  echo "# routes"; ip -n "$r" -4 route show table all
  echo "# proxy neighbours"; ip -n "$r" -4 neigh show proxy
  echo "# links"; ip -n "$r" -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | sort
  echo "# proxy_delay"; ip netns exec "$r" cat "/proc/sys/net/ipv4/neigh/$wan/proxy_delay"
}

# lab_natbox_stop NAME [SIGNAL] — stops knit-natbox (TERM by default; INT works the same):
# it must exit 0 within 10 s, print its counters, and leave the router exactly as it found it.
lab_natbox_stop() {
  local name=$1 sig=${2:-TERM} pid
  pid=${LAB_NATBOX_PID[$name]:-}
  [[ -n "$pid" ]] || lab_fail "lab_natbox_stop: knit-natbox is not running on $name"
  lab__reap "$pid" 10 "$sig"
  unset "LAB_NATBOX_PID[$name]"
  (( LAB_REAP_FORCED )) && lab_fail "knit-natbox on $name did not exit within 10 s of SIG$sig"
  (( LAB_REAP_RC == 0 )) || lab_fail "knit-natbox on $name exited with status $LAB_REAP_RC after SIG$sig"
  grep -q '^natbox: drops:' "${LAB_NATBOX_LOG[$name]}" || lab_fail "knit-natbox on $name printed no counters at exit"
  lab__router_snapshot "$name" >"$LAB_DIR/state/natbox-$name.after"
  diff -u "$LAB_DIR/state/natbox-$name.before" "$LAB_DIR/state/natbox-$name.after" >&2 \
    || lab_fail "knit-natbox on $name did not restore the router's rules, routes, proxy entries or links"
  lab_log "knit-natbox on $name stopped with SIG$sig; router restored (rules, routes, proxy ARP, TUNs)"
}

# lab_natbox_counters NAME — the counter lines knit-natbox printed at exit.
lab_natbox_counters() { grep '^natbox: \(outbound\|mappings\|drops\|tun\)' "${LAB_NATBOX_LOG[$1]}"; }

# lab_natbox_dump NAME — asks knit-natbox for its table (SIGUSR1) and prints that dump.
lab_natbox_dump() {
  local name=$1 log before
  log=${LAB_NATBOX_LOG[$name]}
  before=$(grep -c '^NAT mapping' "$log" || true)
  kill -USR1 "${LAB_NATBOX_PID[$name]}" 2>/dev/null || return 1
  lab_poll 5 lab__dump_count_above "$log" "$before" || return 1
  sleep 0.05
  awk -v n="$(( before + 1 ))" '/^NAT mapping/ { k++ } k == n && !/^natbox:/ { print }' "$log"
}
lab__dump_count_above() { (( $(grep -c '^NAT mapping' "$1" || true) > $2 )); }

# lab_site_kernel NAME TYPE [--port P] [--hairpin] [--hosts N] — netfilter NAT (NAT.md's table).
lab_site_kernel() {
  local name=$1 type=$2 port="" hairpin=0 r wan lan pub h1
  shift 2
  lab__take_hosts "$@"
  set -- "${LAB__REST[@]}"
  while (( $# )); do
    case "$1" in
      --port) port=$2; shift 2 ;;
      --hairpin) hairpin=1; shift ;;
      *) lab_fail "lab_site_kernel: unknown option $1" ;;
    esac
  done
  case "$type" in
    port-restricted|symmetric) ;;
    full-cone|restricted-cone) [[ -n "$port" ]] || lab_fail "lab_site_kernel $type needs --port" ;;
    *) lab_fail "lab_site_kernel: unknown type '$type'" ;;
  esac
  (( hairpin == 0 )) || [[ -n "$port" ]] || lab_fail "lab_site_kernel --hairpin needs --port"
  lab__site_new "$name" "kernel-$type" 1
  r=${LAB_SITE_ROUTER[$name]}
  lab__site_lan "$name" "$r" "$LAB__HOSTS"
  wan=${LAB_SITE_WAN[$name]} lan=${LAB_SITE_LAN[$name]} pub=${LAB_SITE_PUBLIC[$name]}
  h1=$(lab_site_addr "$name" 1)
  local flags="" pre="" post="" fwd=""
  [[ "$type" == symmetric ]] && flags=random
  if [[ "$type" == full-cone || "$type" == restricted-cone ]]; then
    pre+="    iifname \"$wan\" ip daddr $pub udp dport $port dnat to $h1"$'\n'
  fi
  if [[ "$type" == restricted-cone ]]; then
    # Which remote addresses each internal endpoint has sent to; inbound (dnat'ed) packets pass
    # only from those: address-dependent filtering.
    fwd+="    iifname \"$lan\" oifname \"$wan\" meta l4proto udp update @contacted { ip saddr . udp sport . ip daddr }"$'\n'
    fwd+="    iifname \"$wan\" ct status dnat meta l4proto udp ip daddr . udp dport . ip saddr @contacted accept"$'\n'
    fwd+="    iifname \"$wan\" ct status dnat drop"$'\n'
  fi
  if (( hairpin )); then
    pre+="    iifname \"$lan\" ip daddr $pub udp dport $port dnat to $h1"$'\n'
    post+="    iifname \"$lan\" oifname \"$lan\" ct status dnat snat to $pub"$'\n'
  fi
  lab_nft "$r" <<EOF
table ip knit_lab_nat {
  set contacted {
    type ipv4_addr . inet_service . ipv4_addr
    flags dynamic, timeout
    timeout 5m
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
$pre  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
$post    oifname "$wan" masquerade $flags
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
$fwd  }
}
EOF
  lab_log "site $name: kernel $type NAT${port:+ (port $port)}$( ((hairpin)) && echo ", hairpin" ), public $pub, $LAB__HOSTS host(s) on 10.$(( LAB_SITE_IDX[$name] + 1 )).0.0/24"
}

# lab_site_udp_blocked NAME [--hosts N] — masquerade, and every forwarded UDP packet dropped.
lab_site_udp_blocked() {
  local name=$1 r
  shift
  lab__take_hosts "$@"
  lab__site_new "$name" udp-blocked 1
  r=${LAB_SITE_ROUTER[$name]}
  lab__site_lan "$name" "$r" "$LAB__HOSTS"
  lab_nft "$r" <<EOF
table ip knit_lab_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${LAB_SITE_WAN[$name]}" masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    meta l4proto udp counter drop
  }
}
EOF
  lab_log "site $name: masquerade, UDP blocked, public ${LAB_SITE_PUBLIC[$name]}"
}

# lab_site_double NAME [--hosts N] — a home NAT behind a carrier-grade NAT (both masquerade).
# The site's "router" is the home router; the carrier's namespace is kn-NAMEc-SFX.
lab_site_double() {
  local name=$1 i c r cg hw
  shift
  lab__take_hosts "$@"
  lab__site_new "$name" double 1 c
  i=${LAB_SITE_IDX[$name]}
  # What lab__site_new made is the carrier; the home router sits behind it on 100.64.(i+1).0/24.
  c=${LAB_SITE_ROUTER[$name]}
  lab__site_ns "$name" "${name}r"; r=$(lab_ns "${name}r")
  cg=$(lab_name "${name}cg"); hw=$(lab_name "${name}hw")
  lab_veth "$c" "$cg" "100.64.$(( i + 1 )).1/24" "$r" "$hw" "100.64.$(( i + 1 )).2/24"
  lab_route "$r" default "100.64.$(( i + 1 )).1"
  lab_masquerade "$c" "${LAB_SITE_WAN[$name]}"
  lab_masquerade "$r" "$hw"
  LAB_SITE_ROUTER[$name]=$r
  LAB_SITE_WAN[$name]=$hw
  lab__site_lan "$name" "$r" "$LAB__HOSTS"
  lab_log "site $name: home NAT (WAN 100.64.$(( i + 1 )).2) behind carrier NAT (public ${LAB_SITE_PUBLIC[$name]})"
}

# lab_site_del NAME — deletes the site's namespaces (their processes die with them) and checks
# that nothing of it is left: namespaces, the core's end of its link.
lab_site_del() {
  local name=$1 label ns
  [[ -n "${LAB_SITE_KIND[$name]:-}" ]] || lab_fail "lab_site_del: no site $name"
  [[ -n "${LAB_NATBOX_PID[$name]:-}" ]] && lab_natbox_stop "$name"
  for label in ${LAB_SITE_LABELS[$name]}; do lab_ns_del "$label"; done
  for label in ${LAB_SITE_LABELS[$name]}; do
    ns=$(lab_ns "$label")
    ip netns list | awk '{print $1}' | grep -qxF "$ns" && lab_fail "namespace $ns still exists after deleting site $name"
  done
  lab_poll 3 lab__link_gone "$LAB_CORE" "${LAB_SITE_CORE_IF[$name]}" \
    || lab_fail "the core still has ${LAB_SITE_CORE_IF[$name]} after deleting site $name"
  unset "LAB_SITE_KIND[$name]"
  lab_log "site $name deleted (namespaces: ${LAB_SITE_LABELS[$name]% })"
}

# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------

# lab_stun_mapped NS [SERVER] — the reflexive address (IP:PORT) coturn's turnutils_stunclient
# learns from SERVER (default A) in its first answer; status 1 when none comes within 10 s. (The
# client goes on with RFC 5780 change requests, which a filtering NAT makes it wait out: it is
# stopped as soon as the first answer is in.)
lab_stun_mapped() {
  local ns=$1 server=${2:-$LAB_STUN_A} out pid
  lab_require_tools turnutils_stunclient
  out="$LAB_DIR/state/stunclient.$RANDOM.out"
  ip netns exec "$ns" timeout 20 turnutils_stunclient "$server" >"$out" 2>&1 &
  pid=$!
  lab_poll 10 grep -q 'UDP reflexive addr' "$out" || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  sed -n 's/.*UDP reflexive addr: *\([0-9.]*:[0-9]*\).*/\1/p' "$out" | head -n1 | grep .
}

# lab_nat_discover NAME NS [natdiscovery options...] — RFC 5780 behaviour discovery with coturn's
# turnutils_natdiscovery against the STUN server: first the filtering test (-f), then the
# mapping test (-m), as two runs, so options such as -L ADDR -l PORT hold for both (one run of
# -m -f takes a new random port for its second test), and so the mapping test's requests to B
# cannot open the filter the filtering test is about. Sets LAB_NAT_MAPPING (EIM|ADM|APDM|?),
# LAB_NAT_FILTERING (EIF|ADF|APDF|?), LAB_NAT_REFLEXIVE (the mapping test's reflexive
# addresses: from A:3478, B:3478 and, unless EIM, B:3479) and LAB_NAT_SECONDS; both outputs go
# to logs/NAME.log.
lab_nat_discover() {
  local name=$1 ns=$2 log t0 ffile mfile
  shift 2
  lab_require_tools turnutils_natdiscovery
  log="$LAB_DIR/logs/$name.log" ffile="$LAB_DIR/state/$name.f" mfile="$LAB_DIR/state/$name.m"
  t0=${EPOCHREALTIME/./}
  ip netns exec "$ns" timeout 60 turnutils_natdiscovery -f "$@" "$LAB_STUN_A" >"$ffile" 2>&1 || true
  ip netns exec "$ns" timeout 60 turnutils_natdiscovery -m "$@" "$LAB_STUN_A" >"$mfile" 2>&1 || true
  LAB_NAT_SECONDS=$(awk -v us="$(( ${EPOCHREALTIME/./} - t0 ))" 'BEGIN { printf "%.1f", us / 1e6 }')
  cat "$ffile" "$mfile" >"$log"
  LAB_NAT_MAPPING='?' LAB_NAT_FILTERING='?'
  if grep -q 'Address and Port Dependent Mapping' "$mfile"; then LAB_NAT_MAPPING=APDM
  elif grep -q 'Address Dependent Mapping' "$mfile"; then LAB_NAT_MAPPING=ADM
  elif grep -q 'Endpoint Independent Mapping' "$mfile"; then LAB_NAT_MAPPING=EIM
  fi
  if grep -q 'Address and Port Dependent Filtering' "$ffile"; then LAB_NAT_FILTERING=APDF
  elif grep -q 'Address Dependent Filtering' "$ffile"; then LAB_NAT_FILTERING=ADF
  elif grep -q 'Endpoint Independent Filtering' "$ffile"; then LAB_NAT_FILTERING=EIF
  fi
  mapfile -t LAB_NAT_REFLEXIVE < <(sed -n 's/.*UDP reflexive addr: *\([0-9.]*:[0-9]*\).*/\1/p' "$mfile")
}

# UDP conversations with OpenBSD nc: lab_udp_open NAME NS NC_ARGS... starts `nc -n -u NC_ARGS`
# in NS reading lines appended by lab_udp_send NAME TEXT (each line one datagram); what it
# receives goes to a file that lab_udp_wait NAME TEXT TIMEOUT_S polls (status 1 on timeout).
# A listener (-l) answers the first endpoint that talks to it (with -v its log, lab_udp_log,
# says which); a client only hears its server. lab_udp_close NAME stops it.
declare -gA LAB_UDP_PID=()
lab_udp_open() {
  local name=$1 ns=$2
  shift 2
  : >"$LAB_DIR/state/udp-$name.in"
  : >"$LAB_DIR/state/udp-$name.out"
  lab_bg "udp-$name" "$ns" timeout 300 sh -c 'in=$1 out=$2; shift 2; tail -n +1 -f "$in" | nc -n -u "$@" >"$out"' \
    sh "$LAB_DIR/state/udp-$name.in" "$LAB_DIR/state/udp-$name.out" "$@"
  LAB_UDP_PID[$name]=$LAB_BG_LAST
  if [[ " $* " == *" -l "* ]]; then
    local port
    port=$(sed -n 's/.*-p \([0-9]*\).*/\1/p' <<<"$*")
    [[ -z "$port" ]] || lab_wait_for 5 "nc listening on UDP $port in $ns" lab__udp_bound "$ns" "$port"
  fi
}
lab__udp_bound() { [[ -n "$(ip netns exec "$1" ss -Hlun "sport = :$2")" ]]; }
lab_udp_send() { printf '%s\n' "$2" >>"$LAB_DIR/state/udp-$1.in"; }
lab_udp_wait() { lab_poll "$3" grep -qxF "$2" "$LAB_DIR/state/udp-$1.out"; }
lab_udp_received() { cat "$LAB_DIR/state/udp-$1.out"; }
lab_udp_log() { cat "$LAB_DIR/logs/udp-$1.log"; }
lab_udp_close() {
  local pid=${LAB_UDP_PID[$1]:-}
  [[ -n "$pid" ]] || return 0
  # timeout(1) passes the signal on to the shell pipeline it runs.
  lab__reap "$pid" 3 TERM
  unset "LAB_UDP_PID[$1]"
}

# lab_udp_once NS SRC_PORT DEST PORT TEXT — one datagram from SRC_PORT (opens a mapping).
lab_udp_once() {
  printf '%s\n' "$5" | ip netns exec "$1" timeout 5 nc -n -u -w1 -p "$2" "$3" "$4" >/dev/null 2>&1 || true
}
