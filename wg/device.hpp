// The WireGuard device core: every peer, the index table and the allowed-IPs table, driven by
// three inputs and no I/O of its own (now in; effects out through the Transport and the
// TunSink, transport.hpp; deadline out):
//
//   on_tun_packet(now, frame)      a plaintext IP packet from the TUN, to encrypt and send
//   on_datagram(now, from, bytes)  a UDP datagram from the network, to authenticate and decrypt
//   on_timers(now)                 retransmissions, keepalives, rekeys, key zeroing
//
// Buffers: on_tun_packet takes the packet already placed kFrameHeadroom bytes into a frame with
// kFrameTailroom spare bytes after it, and encrypts it in place — no copy, no allocation.
//
// The data path also comes in two halves around the AEAD (crypto_job.hpp), so a loop can seal
// or open a batch on several threads: prepare_seal / prepare_open on the loop (counters are
// assigned here, in order), run_crypto anywhere, finish_seal / finish_open on the loop in the
// order prepared (the replay window is checked here, after authentication). on_tun_packet and
// on_datagram are the three steps in one call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "wg/allowed_ips.hpp"
#include "wg/constants.hpp"
#include "wg/cookie.hpp"
#include "wg/crypto_job.hpp"
#include "wg/handshake.hpp"
#include "wg/peer.hpp"
#include "wg/transport.hpp"

namespace knit::wg {

inline constexpr std::size_t kFrameHeadroom = kDataHeaderSize;
inline constexpr std::size_t kFrameTailroom = kPaddingMultiple - 1 + kAuthTagSize;

// Both clocks at one moment: monotonic for timers, wall for TAI64N and `latest handshake`.
struct Now {
  Instant mono{};
  WallTime wall{};
};

// Every drop has a reason and a counter.
struct DeviceStats {
  std::uint64_t rx_datagrams = 0;
  std::uint64_t rx_too_short = 0;
  std::uint64_t rx_unknown_type = 0;
  std::uint64_t rx_bad_reserved = 0;
  std::uint64_t rx_bad_size = 0;
  std::uint64_t rx_no_private_key = 0;
  std::uint64_t rx_invalid_mac = 0;
  std::uint64_t rx_handshake_failed = 0;
  std::uint64_t rx_unknown_peer = 0;
  std::uint64_t rx_replayed_handshake = 0;
  std::uint64_t rx_handshake_flood = 0;
  std::uint64_t rx_unknown_index = 0;
  std::uint64_t rx_expired_keypair = 0;
  std::uint64_t rx_decrypt_failed = 0;
  std::uint64_t rx_replayed_data = 0;
  std::uint64_t rx_bad_inner_packet = 0;
  std::uint64_t rx_disallowed_source = 0;
  std::uint64_t rx_bad_cookie_reply = 0;
  std::uint64_t rx_keepalives = 0;
  std::uint64_t tx_cookie_replies = 0;
  std::uint64_t tx_bad_packet = 0;
  std::uint64_t tx_no_route = 0;
  std::uint64_t tx_no_endpoint = 0;
  std::uint64_t tx_staged_dropped = 0;
  std::uint64_t handshakes_completed = 0;
  std::uint64_t handshake_initiations_sent = 0;
};

struct DeviceConfig {
  // Handshake messages per second above which the device counts as under load and demands
  // cookies (whitepaper §5.3). Measured over a sliding one-second window.
  std::uint32_t under_load_handshakes_per_second = 256;
  // Upper bound on the number of peers, so configuration input cannot exhaust memory.
  std::size_t max_peers = 1u << 20;
};

class Device {
 public:
  Device(Transport& transport, TunSink& tun, Random& rng, DeviceConfig config = {});
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // The transport every datagram leaves through, from now on (a mesh puts its own in place of
  // the plain one while joined). Not owned; must outlive its use.
  void set_transport(Transport& transport) { transport_ = &transport; }
  Transport& transport() const { return *transport_; }

  // --- configuration (the UAPI's operations) ---
  void set_private_key(const std::optional<PrivateKey>& key);
  const LocalIdentity& identity() const { return identity_; }
  Peer* find_peer(const PublicKey& key);
  // Creates the peer if missing; nullptr if the peer limit is reached or the key is our own.
  Peer* add_peer(const PublicKey& key, Now now);
  void remove_peer(const PublicKey& key);
  void remove_all_peers();
  void set_preshared_key(Peer& peer, const PresharedKey& psk);
  void set_endpoint(Peer& peer, const Endpoint& endpoint);
  void set_persistent_keepalive(Peer& peer, std::chrono::seconds interval, Now now);
  void add_allowed_ip(Peer& peer, const IpPrefix& prefix);
  void clear_allowed_ips(Peer& peer);
  std::vector<IpPrefix> allowed_ips_of(const Peer& peer) const;
  // The peer whose allowed IPs hold this inner address (cryptokey routing), if any.
  const Peer* peer_for(const IpAddress& inner) const {
    const auto p = allowed_ips_.lookup(inner);
    return p ? *p : nullptr;
  }
  template <typename F>
  void for_each_peer(F&& f) const {
    for (const auto& key : peer_order_) f(*peers_.at(key));
  }
  std::size_t peer_count() const { return peers_.size(); }
  // Drops every session and handshake (device down), keeping configuration.
  void reset_sessions();

  // --- the data path ---
  // frame: kFrameHeadroom bytes, then the packet (packet_size bytes), then kFrameTailroom spare.
  void on_tun_packet(Now now, MutableByteSpan frame, std::size_t packet_size);
  void on_datagram(Now now, const Endpoint& from, MutableByteSpan datagram);
  void on_timers(Now now);
  std::optional<Instant> next_deadline() const;

  // --- the data path in halves, for batches (crypto_job.hpp) ---
  // Every job prepared is finished, in the order prepared (that keeps each peer's order), and
  // the frame or datagram stays untouched in between except by run_crypto. The peer must stay
  // (no remove_peer in between); keys may rotate or be zeroed: the job holds its keypair, and
  // finish_open then drops what the retired keypair can no longer accept. The data plane
  // finishes each batch within the burst of work that prepared it.
  // true: job holds the packet, to seal; false: handled here (dropped and counted, or staged
  // while a handshake runs). frame as on_tun_packet's.
  bool prepare_seal(Now now, MutableByteSpan frame, std::size_t packet_size, CryptoJob& job);
  // Sends the sealed datagram; releases the job's keypair.
  void finish_seal(Now now, CryptoJob& job);
  // Whether a datagram is a transport data message (what prepare_open takes into a job).
  static bool is_data_message(ByteSpan datagram);
  // true: job holds the data message, to open. false: handled here — dropped and counted, or,
  // not being a data message, processed at once like on_datagram (a handshake can rotate keys:
  // the caller finishes the jobs it holds first, which also keeps each peer's order).
  bool prepare_open(Now now, const Endpoint& from, MutableByteSpan datagram, CryptoJob& job);
  // The replay window, key confirmation, roaming, timers, cryptokey routing and the TunSink, for
  // a job run_crypto opened (or failed to); releases the job's keypair.
  void finish_open(Now now, CryptoJob& job);
  // Starts a handshake with the peer now (as sending a packet would).
  void initiate_handshake(Peer& peer, Now now, bool is_retry = false);

  const DeviceStats& stats() const { return stats_; }
  // Forces the under-load path (cookie replies) regardless of the measured rate; for tests.
  void force_under_load(bool on) { force_under_load_ = on; }
  bool under_load(Instant now);
  // Padding never grows a packet past the tunnel MTU (whitepaper §5.4.6).
  void set_mtu(std::size_t mtu) { mtu_ = mtu; }
  std::size_t mtu() const { return mtu_; }

 private:
  struct IndexEntry {
    Peer* peer = nullptr;
    Keypair* keypair = nullptr;  // null while the index names a handshake in flight
  };

  void handle_initiation(Now now, const Endpoint& from, MutableByteSpan msg);
  void handle_response(Now now, const Endpoint& from, MutableByteSpan msg);
  void handle_cookie_reply(Now now, MutableByteSpan msg);
  void handle_data(Now now, const Endpoint& from, MutableByteSpan msg);
  // Returns false when the message must be dropped (bad mac1, or a cookie reply was sent).
  bool check_handshake_macs(Now now, const Endpoint& from, MutableByteSpan msg);

  void send_keepalive(Peer& peer, Now now);
  // Encrypts frame in place with the peer's current session and sends it.
  void seal_and_send(Peer& peer, Keypair& keypair, MutableByteSpan frame, std::size_t packet_size,
                     Now now);
  // Pads, writes the header, takes the next counter: everything of sealing but the AEAD.
  void fill_seal_job(Peer& peer, Keypair& keypair, MutableByteSpan frame, std::size_t packet_size,
                     CryptoJob& job);
  // A data message's index and keypair (no counting of rx_datagrams).
  bool fill_open_job(Now now, const Endpoint& from, MutableByteSpan msg, CryptoJob& job);
  void stage_packet(Peer& peer, ByteSpan packet);
  void flush_staged(Peer& peer, Now now);
  void send_to_peer(Peer& peer, ByteSpan datagram);
  void session_established(Peer& peer, SessionKeys&& keys, Now now);
  void zero_peer_keys(Peer& peer);
  void retire(const Retired& retired);
  void reconfigure_handshakes();

  std::uint32_t new_index(Peer* peer, Keypair* keypair);

  Transport* transport_;
  TunSink& tun_;
  Random& rng_;
  DeviceConfig config_;
  LocalIdentity identity_;
  CookieChecker cookie_checker_;
  std::unordered_map<PublicKey, std::unique_ptr<Peer>, KeyHash> peers_;
  std::vector<PublicKey> peer_order_;  // insertion order, for stable `wg show` output
  std::unordered_map<std::uint32_t, IndexEntry> indices_;
  AllowedIps<Peer*> allowed_ips_;
  DeviceStats stats_;
  Bytes scratch_;  // keepalives, staged-packet flushes, handshake messages

  // Handshake-rate measurement for the under-load decision.
  Instant load_window_start_{};
  std::uint32_t load_window_count_ = 0;
  std::uint32_t load_previous_count_ = 0;
  bool force_under_load_ = false;
  std::size_t mtu_ = 1420;
};

}  // namespace knit::wg
