// One remote WireGuard peer: its configuration, handshake, sessions, timers and counters.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/time.hpp"
#include "wg/cookie.hpp"
#include "wg/handshake.hpp"
#include "wg/keypair.hpp"
#include "wg/keys.hpp"
#include "wg/timers.hpp"

namespace knit::wg {

struct Peer {
  Peer(const PublicKey& key, Random& rng) : public_key(key), timers(rng) {}

  PublicKey public_key;
  PresharedKey preshared_key;
  std::optional<Endpoint> endpoint;

  Handshake handshake;
  CookieMacs cookie_macs;
  Keypairs keypairs;
  PeerTimers timers;

  // Packets waiting for a session, oldest first, at most kMaxStagedPackets.
  std::deque<Bytes> staged;

  std::optional<Instant> last_initiation_sent;
  bool sent_lastminute_handshake = false;
  std::optional<WallTime> last_handshake;  // completion time, for `wg show`

  std::uint64_t rx_bytes = 0;
  std::uint64_t tx_bytes = 0;
};

}  // namespace knit::wg
