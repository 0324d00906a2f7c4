#!/usr/bin/env bash
# Installs everything Knit needs to build and test, from Debian 12's own archive only.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages with apt-get)" >&2
  exit 1
fi
packages=(
  # build
  build-essential cmake ninja-build pkg-config
  # the clang build: sanitizers and libFuzzer (scripts/sanitize.sh, scripts/fuzz.sh); llvm
  # brings llvm-symbolizer for readable sanitizer stack traces
  clang libclang-rt-14-dev llvm
  # libraries
  libsodium-dev libb2-dev libasio-dev nlohmann-json3-dev libcli11-dev libsqlite3-dev
  libnl-route-3-dev libgtest-dev libgmock-dev libbenchmark-dev
  libnatpmp-dev libminiupnpc-dev libssl-dev
  libldns-dev  # the mesh resolver's DNS wire format (dns/)
  libpq-dev zlib1g-dev  # the coordinator's PostgreSQL store; zlib for bench/peer_codec_bench
  # test peers and lab tools
  wireguard-go wireguard-tools iproute2 nftables iputils-ping netcat-openbsd iperf3 tcpdump
  procps kmod jq coturn stun-client
  postgresql  # a real server for the store tests, the coordinator HA netns test and the bench
  miniupnpd-nftables  # lab router for PCP/NAT-PMP/UPnP tests; no maintainer scripts, no service
  # packaging: cpack -G DEB (dpkg-shlibdeps needs file), systemd-analyze verify, lintian;
  # dpkg-buildflags (dpkg-dev) for the Debian-flags builds (build.sh --debian-flags, check-builds.sh);
  # help2man makes the manual pages from each program's --help
  file systemd lintian dpkg-dev help2man
  # the install test: a Debian root filesystem (debootstrap, cached) booted by systemd-nspawn
  debootstrap systemd-container
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup.sh: all packages present"
fi
