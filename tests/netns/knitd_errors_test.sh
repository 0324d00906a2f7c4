#!/usr/bin/env bash
# knitd when things go wrong: bad UAPI requests, signals, no TUN, no privileges, a name clash.
#
#   [kn-e-SFX]                         [kn-f-SFX]
#    knitd on ke-SFX  (UAPI tests,      a second knitd asking for ke-SFX
#    signals, a second knitd on          (its TUN would fit here; the UAPI socket
#    the same name)                      /var/run/wireguard/ke-SFX.sock is shared)
#    knitd on kn-SFX / kp-SFX / kq-SFX (no /dev/net/tun, /dev/null as tun, not root)
#
#   (no links: nothing here sends packets; the UAPI socket is reached from the host side)
#
# 1. UAPI, spoken directly on the socket with `nc -U`: `get=1` answers errno=0; a set with an
#    unknown key, a malformed listen_port, a malformed private_key and a malformed allowed_ip
#    each answer errno=-22; knitd keeps running and keeps answering; a valid set still works.
# 2. SIGTERM, then (restarted) SIGINT: knitd exits within 10 s and removes its socket and TUN.
# 3. Without a usable /dev/net/tun (hidden by an empty tmpfs; replaced by /dev/null) and
#    without root: knitd exits non-zero within 10 s, prints one line naming the problem, and
#    leaves no socket behind.
# 4. A second knitd on the same interface name, in the same namespace and in another one,
#    refuses to start with a clear message; the first keeps its socket, its TUN, and answers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lab/lib.sh"
lab_init unshare setpriv
lab_require_impl knitd
IMPL=knitd

lab_ns_add e; E=$(lab_ns e)
lab_ns_add f; F=$(lab_ns f)
KE=$(lab_name ke)

# uapi IFNAME REQUEST — the raw answer of the UAPI socket to REQUEST (printf escapes allowed).
uapi() {
  printf "$2" | timeout 5 nc -U -N "/var/run/wireguard/$1.sock"
}

# expect_errno IFNAME WHAT REQUEST ERRNO
expect_errno() {
  local ifn=$1 what=$2 req=$3 want=$4 got
  got=$(uapi "$ifn" "$req") || lab_fail "UAPI ($what): no answer from /var/run/wireguard/$ifn.sock"
  [[ "$(tail -n 1 <<<"$got")" == "errno=$want" ]] \
    || lab_fail "UAPI ($what): expected errno=$want as the last line, got: $(tr '\n' '|' <<<"$got")"
  lab__alive "$(lab_wg_pid "$ifn")" || lab_fail "knitd died after UAPI request ($what)"
  lab_wg "$ifn" show >/dev/null || lab_fail "\`wg show $ifn\` fails after UAPI request ($what)"
  lab_pass "UAPI $what -> errno=$want; knitd still running and answering"
}

lab_step "1. UAPI errors on the raw socket"
lab_wg_start "$IMPL" "$E" "$KE"
got=$(uapi "$KE" 'get=1\n\n') || lab_fail "UAPI get: no answer"
[[ "$(tail -n 1 <<<"$got")" == errno=0 ]] || lab_fail "UAPI get=1 does not end with errno=0: $(tr '\n' '|' <<<"$got")"
grep -q '^listen_port=[0-9]\+$' <<<"$got" || lab_fail "UAPI get=1 has no listen_port line: $(tr '\n' '|' <<<"$got")"
lab_pass "UAPI get=1 answers key=value lines ending in errno=0"
PEER=$(wg genkey | wg pubkey | base64 -d | od -An -tx1 | tr -d ' \n')
expect_errno "$KE" "unknown key (set=1, knit_bogus_key=1)" 'set=1\nknit_bogus_key=1\n\n' -22
expect_errno "$KE" "malformed listen_port (notaport)" 'set=1\nlisten_port=notaport\n\n' -22
expect_errno "$KE" "listen_port out of range (70000)" 'set=1\nlisten_port=70000\n\n' -22
expect_errno "$KE" "malformed private_key (not hex)" 'set=1\nprivate_key=zz\n\n' -22
expect_errno "$KE" "malformed allowed_ip (10.0.0.300/32)" "set=1\npublic_key=$PEER\nallowed_ip=10.0.0.300/32\n\n" -22
expect_errno "$KE" "valid listen_port (51999)" 'set=1\nlisten_port=51999\n\n' 0
[[ "$(lab_wg "$KE" show listen-port)" == 51999 ]] || lab_fail "after a valid set, \`wg show $KE listen-port\` is not 51999"
lab_pass "a valid set after the errors took effect"

lab_step "2. SIGTERM and SIGINT"
lab_wg_stop "$KE" TERM
lab_pass "SIGTERM: exited (status $LAB_REAP_RC), socket and TUN removed"
lab_wg_start "$IMPL" "$E" "$KE"
lab_wg_stop "$KE" INT
lab_pass "SIGINT: exited (status $LAB_REAP_RC), socket and TUN removed"

# run_expect_failure NAME WHAT CMD... — runs a knitd that must refuse to start: non-zero exit
# within 10 s, exactly one line of output, matching the regex in $WANT; no socket left for NAME.
run_expect_failure() {
  local ifn=$1 what=$2 out rc=0 lines
  shift 2
  out=$(timeout 10 "$@" 2>&1) || rc=$?
  (( rc != 124 )) || lab_fail "$what: knitd was still running after 10 s (it should refuse to start)"
  (( rc != 0 )) || lab_fail "$what: knitd exited with status 0; output: $out"
  lines=$(grep -c . <<<"$out" || true)
  (( lines == 1 )) || lab_fail "$what: expected a one-line error, got $lines lines (exit $rc):"$'\n'"$out"
  grep -Eqi -- "$WANT" <<<"$out" || lab_fail "$what: the message does not say what is wrong (want /$WANT/): $out"
  [[ ! -e "/var/run/wireguard/$ifn.sock" ]] || lab_fail "$what: knitd left /var/run/wireguard/$ifn.sock behind"
  lab_pass "$what: exit $rc, \"$out\""
}

lab_step "3. no /dev/net/tun, /dev/null as tun, not root"
KN=$(lab_name kn); KP=$(lab_name kp); KQ=$(lab_name kq)
LAB_WG_EVER+=("$KN" "$KP" "$KQ")   # their sockets, should they leak, are removed on exit
WANT='/dev/net/tun|tun'
lab_wg_argv "$IMPL" "$KN"
run_expect_failure "$KN" "/dev/net hidden by an empty tmpfs" \
  ip netns exec "$E" unshare --mount sh -c 'mount -t tmpfs -o size=64k knit-notun /dev/net && exec "$@"' sh "${LAB_ARGV[@]}"
lab_wg_argv "$IMPL" "$KP"
run_expect_failure "$KP" "/dev/null bind-mounted over /dev/net/tun" \
  ip netns exec "$E" unshare --mount sh -c 'mount --bind /dev/null /dev/net/tun && exec "$@"' sh "${LAB_ARGV[@]}"
lab_wg_argv "$IMPL" "$KQ"
mkdir -p "$LAB_DIR/state/$KQ" && chmod 777 "$LAB_DIR/state/$KQ"
chmod 711 "$LAB_DIR" "$LAB_DIR/state"
bin=$(command -v "${LAB_ARGV[0]}")
if setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$bin" 2>/dev/null; then
  WANT='root|permi|cap_net_admin|privilege|denied|not allowed|tun'
  run_expect_failure "$KQ" "not root (uid 65534, no capabilities)" \
    ip netns exec "$E" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
    --bounding-set=-all "${LAB_ARGV[@]}"
else
  lab_log "note: $bin is not executable by uid 65534 here (a folder on its path is closed?); the not-root case is not run"
fi

lab_step "4. a second knitd on the same interface name"
lab_wg_start "$IMPL" "$E" "$KE"
first=$(lab_wg_pid "$KE")
WANT="$KE|in use|already|exists|busy"
lab_wg_argv "$IMPL" "$KE"
second_ok() {
  lab__alive "$first" || lab_fail "$1: the first knitd on $KE died"
  [[ -S "/var/run/wireguard/$KE.sock" ]] || lab_fail "$1: the first knitd's socket /var/run/wireguard/$KE.sock is gone"
  ip -n "$E" link show "$KE" >/dev/null 2>&1 || lab_fail "$1: the first knitd's TUN $KE is gone"
  lab_wg "$KE" show >/dev/null || lab_fail "$1: the first knitd no longer answers \`wg show\`"
  lab_pass "$1: the first knitd is unharmed"
}
out=$(timeout 10 ip netns exec "$E" "${LAB_ARGV[@]}" 2>&1) && rc=0 || rc=$?
(( rc != 124 )) || lab_fail "same namespace: a second knitd on $KE was still running after 10 s"
(( rc != 0 )) || lab_fail "same namespace: a second knitd on $KE exited 0: $out"
grep -Eqi -- "$WANT" <<<"$out" || lab_fail "same namespace: the second knitd's message does not say the name is taken: $out"
lab_pass "same namespace: second knitd refused (exit $rc): $(head -n 3 <<<"$out" | tr '\n' ' ')"
second_ok "same namespace"
out=$(timeout 10 ip netns exec "$F" "${LAB_ARGV[@]}" 2>&1) && rc=0 || rc=$?
(( rc != 124 )) || lab_fail "other namespace: a second knitd on $KE was still running after 10 s"
(( rc != 0 )) || lab_fail "other namespace: a second knitd on $KE exited 0: $out"
grep -Eqi -- "$WANT" <<<"$out" || lab_fail "other namespace: the second knitd's message does not say the name is taken: $out"
lab_pass "other namespace: second knitd refused (exit $rc): $(head -n 3 <<<"$out" | tr '\n' ' ')"
lab__link_gone "$F" "$KE" || lab_fail "other namespace: the refused knitd left a TUN $KE in $F"
second_ok "other namespace"
lab_wg_stop "$KE" TERM

lab_step "PASS: knitd error handling"
