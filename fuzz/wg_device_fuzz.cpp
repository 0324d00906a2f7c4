// The WireGuard device's receive path with a configured peer (wg/device.hpp), in fast mode:
// device A (under test) and its peer B get their keys and a session once, so inputs spend
// their time in what follows rather than in X25519. The world is rebuilt (a fresh handshake)
// every kRebuildEvery runs and before the session would need rekeying, so state carried from
// one input to the next stays young; a crash found this way reproduces from a fresh world in
// nearly every case (rerun the input alone to check).
//
// Each input is a list of operations (op u8 | length u16 | bytes[length]), op % 6:
//   0  bytes as a datagram from B's endpoint (or, op bit 3, from a stranger) into A
//   1  bytes as a plaintext packet B's TUN reads: B encrypts it, A receives it (op bit 3: one
//      byte of the datagram flipped on the way, at an offset the first data byte picks)
//   2  bytes as a plaintext packet A's TUN reads: A encrypts and sends to B, B answers
//   3  time passes (the first byte: tenths of a second, up to 25.5 s) and both run timers
//   4  one of the last datagrams B sent, replayed into A (its header fields patched from bytes)
//   5  B starts a new handshake; the initiation (bytes patched into it) goes to A
// Properties: whatever A writes to its TUN comes from an address B is allowed (10.0.0.2/32,
// fd00::2/128); no operation makes A send more than a bounded number of datagrams.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "base/random.hpp"
#include "fuzz/fuzz_util.hpp"
#include "wg/crypto.hpp"
#include "wg/device.hpp"
#include "wg/transport.hpp"

using namespace knit;
using namespace knit::wg;

namespace {

constexpr int kRebuildEvery = 20000;
constexpr auto kMaxWorldAge = std::chrono::seconds(100);  // < REKEY_AFTER_TIME (120 s)

struct Out {
  Endpoint to;
  Bytes bytes;
};

class Io : public Transport, public TunSink {
 public:
  void send(const Peer& peer, std::span<const ByteSpan> datagrams) override {
    for (ByteSpan datagram : datagrams) record(*peer.endpoint, datagram);
  }
  void send_reply(const Endpoint& to, ByteSpan datagram) override { record(to, datagram); }
  void write_tun(MutableByteSpan packet) override { tun.emplace_back(packet.begin(), packet.end()); }
  std::deque<Out> sent;
  std::vector<Bytes> tun;
  std::size_t count = 0;

 private:
  void record(const Endpoint& to, ByteSpan datagram) {
    if (sent.size() < 256) sent.push_back({to, Bytes(datagram.begin(), datagram.end())});
    ++count;
  }
};

struct World {
  SeededRandom rng_a{1}, rng_b{2};
  Io io_a, io_b;
  Device a{io_a, io_a, rng_a}, b{io_b, io_b, rng_b};
  Peer* peer_b = nullptr;  // B as A's peer
  Peer* peer_a = nullptr;
  Endpoint ep_a{*IpAddress::parse("192.0.2.1"), 51820};
  Endpoint ep_b{*IpAddress::parse("192.0.2.2"), 51821};
  Endpoint stranger{*IpAddress::parse("198.51.100.9"), 4444};
  Now now{Instant{std::chrono::hours(1)}, WallTime{std::chrono::hours(24 * 365 * 50)}};
  Instant born{};
  std::deque<Bytes> from_b;  // the last datagrams B sent to A
  int runs = 0;

  World() {
    SeededRandom keys(99);
    a.set_private_key(crypto::generate_private_key(keys));
    b.set_private_key(crypto::generate_private_key(keys));
    peer_b = a.add_peer(b.identity().public_key, now);
    peer_a = b.add_peer(a.identity().public_key, now);
    a.set_endpoint(*peer_b, ep_b);
    b.set_endpoint(*peer_a, ep_a);
    a.add_allowed_ip(*peer_b, *IpPrefix::parse("10.0.0.2/32"));
    a.add_allowed_ip(*peer_b, *IpPrefix::parse("fd00::2/128"));
    b.add_allowed_ip(*peer_a, *IpPrefix::parse("10.0.0.1/32"));
    b.add_allowed_ip(*peer_a, *IpPrefix::parse("0.0.0.0/0"));
    born = now.mono;
    // The session: B sends first, the handshake completes, A has a keypair for B.
    tun_b(ipv4(0x0a000002, 0x0a000001));
    pump();
    io_a.tun.clear();
  }

  static Bytes ipv4(std::uint32_t src, std::uint32_t dst) {
    Bytes p(28, 0);
    p[0] = 0x45;
    store_be16(p.data() + 2, 28);
    p[8] = 64;
    p[9] = 17;
    store_be32(p.data() + 12, src);
    store_be32(p.data() + 16, dst);
    return p;
  }

  void tun_into(Device& dev, const Bytes& packet) {
    Bytes frame(kFrameHeadroom + packet.size() + kFrameTailroom);
    if (!packet.empty()) std::memcpy(frame.data() + kFrameHeadroom, packet.data(), packet.size());
    dev.on_tun_packet(now, frame, packet.size());
  }
  void tun_b(const Bytes& packet) { tun_into(b, packet); }

  void deliver_to_a(Bytes datagram, const Endpoint& from) { a.on_datagram(now, from, datagram); }

  // Moves datagrams between A and B until both are quiet (bounded).
  void pump() {
    for (int round = 0; round < 16 && (!io_a.sent.empty() || !io_b.sent.empty()); ++round) {
      while (!io_b.sent.empty()) {
        Out o = std::move(io_b.sent.front());
        io_b.sent.pop_front();
        remember(o.bytes);
        if (o.to.same_remote(ep_a)) deliver_to_a(std::move(o.bytes), ep_b);
      }
      while (!io_a.sent.empty()) {
        Out o = std::move(io_a.sent.front());
        io_a.sent.pop_front();
        if (o.to.same_remote(ep_b)) b.on_datagram(now, ep_a, o.bytes);
      }
    }
    io_a.sent.clear();
    io_b.sent.clear();
  }

  void remember(const Bytes& datagram) {
    from_b.push_back(datagram);
    if (from_b.size() > 8) from_b.pop_front();
  }

  // B's output so far, into A, flipping one byte of the first datagram when asked.
  void b_output_to_a(bool flip, std::size_t flip_at) {
    while (!io_b.sent.empty()) {
      Out o = std::move(io_b.sent.front());
      io_b.sent.pop_front();
      remember(o.bytes);
      if (flip && !o.bytes.empty()) {
        o.bytes[flip_at % o.bytes.size()] ^= 0x5a;
        flip = false;
      }
      deliver_to_a(std::move(o.bytes), ep_b);
    }
  }
};

std::unique_ptr<World> world;

void check_tun(const World& w) {
  for (const Bytes& p : w.io_a.tun) {
    KNIT_FUZZ_CHECK(!p.empty());
    if ((p[0] >> 4) == 4) {
      KNIT_FUZZ_CHECK(p.size() >= 20 && load_be32(p.data() + 12) == 0x0a000002);
    } else {
      static const std::uint8_t kFd002[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
      KNIT_FUZZ_CHECK((p[0] >> 4) == 6 && p.size() >= 40 && std::memcmp(p.data() + 8, kFd002, 16) == 0);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (!world || ++world->runs > kRebuildEvery || world->now.mono - world->born > kMaxWorldAge)
    world = std::make_unique<World>();
  World& w = *world;
  fuzz::Reader in(data, size);
  int operations = 0;
  while (!in.empty() && ++operations <= 32) {
    auto [op, bytes] = fuzz::next_record(in, 2048);
    w.io_a.count = 0;
    switch (op % 6) {
      case 0:
        w.deliver_to_a(bytes, (op & 8) ? w.stranger : w.ep_b);
        break;
      case 1: {
        const std::size_t flip_at = bytes.empty() ? 0 : bytes[0];
        w.tun_b(bytes);
        w.b_output_to_a((op & 8) != 0, flip_at);
        break;
      }
      case 2:
        w.tun_into(w.a, bytes);
        break;
      case 3: {
        const auto step = std::chrono::milliseconds(100 * (bytes.empty() ? 1 : bytes[0]));
        w.now.mono += step;
        w.now.wall += std::chrono::duration_cast<std::chrono::system_clock::duration>(step);
        w.a.on_timers(w.now);
        w.b.on_timers(w.now);
        break;
      }
      case 4: {
        if (w.from_b.empty()) break;
        Bytes d = w.from_b[(bytes.empty() ? 0 : bytes[0]) % w.from_b.size()];
        for (std::size_t i = 1; i + 1 < bytes.size() && i < 32; i += 2) {
          if (!d.empty()) d[bytes[i] % d.size()] = bytes[i + 1];
        }
        w.deliver_to_a(std::move(d), w.ep_b);
        break;
      }
      default: {
        w.b.initiate_handshake(*w.peer_a, w.now);
        if (w.io_b.sent.empty()) break;
        Out o = std::move(w.io_b.sent.back());
        w.io_b.sent.clear();
        for (std::size_t i = 0; i + 1 < bytes.size() && i < 32; i += 2) {
          o.bytes[bytes[i] % o.bytes.size()] = bytes[i + 1];
        }
        w.deliver_to_a(std::move(o.bytes), w.ep_b);
        break;
      }
    }
    KNIT_FUZZ_CHECK(w.io_a.count <= 64);
    w.pump();
    check_tun(w);
    w.io_a.tun.clear();
  }
  return 0;
}
