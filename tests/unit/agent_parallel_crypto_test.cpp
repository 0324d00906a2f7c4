// Sealing and opening on several threads (agent/crypto_workers.hpp, wg/crypto_job.hpp): the
// workers compute exactly what one thread computes; per-peer order, the replay window (late,
// duplicated and too-old counters), forged packets and a handshake in the middle of a batch
// give the same result as the sequential device, byte for byte; keys rotated or zeroed while
// jobs are in flight stay alive until the jobs are finished, then go.
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <algorithm>
#include <map>

#include "agent/crypto_workers.hpp"
#include "base/random.hpp"
#include "tests/support/ipv4_udp_packet.hpp"
#include "wg/crypto.hpp"
#include "wg/device.hpp"
#include "wg/keypair.hpp"

namespace knit::agent {
namespace {

using wg::CryptoJob;
using wg::Device;
using wg::Now;

struct Sent {
  Endpoint to;
  Bytes bytes;
};

class RecordingIo : public wg::Transport, public wg::TunSink {
 public:
  void send(const wg::Peer& peer, std::span<const ByteSpan> datagrams) override {
    for (ByteSpan d : datagrams) sent.push_back({*peer.endpoint, Bytes(d.begin(), d.end())});
  }
  void send_reply(const Endpoint& to, ByteSpan d) override { sent.push_back({to, Bytes(d.begin(), d.end())}); }
  void write_tun(MutableByteSpan packet) override { tun.emplace_back(packet.begin(), packet.end()); }
  std::deque<Sent> sent;
  std::vector<Bytes> tun;
};

// IPv4/UDP from src to dst; the payload starts with the sender's sequence number.
Bytes numbered_packet(std::uint32_t src, std::uint32_t dst, std::uint32_t seq, std::size_t payload) {
  Bytes p = testing::ipv4_udp_packet(src, dst, payload, static_cast<std::uint8_t>(seq));
  store_be32(p.data() + 28, seq);
  return p;
}
std::uint32_t sequence_of(const Bytes& p) { return load_be32(p.data() + 28); }
std::uint32_t source_of(const Bytes& p) { return load_be32(p.data() + 12); }

constexpr std::uint32_t kAddrA = 0x0a000001, kAddrB = 0x0a000002, kAddrC = 0x0a000003;

// Runs jobs as the data plane does: prepared in order, the AEAD on the workers (or here, when
// workers is null), finished in order.
class Batch {
 public:
  Batch(Device& device, CryptoWorkers* workers) : device_(device), workers_(workers), jobs_(128) {}
  CryptoJob& next() { return jobs_[pending_]; }
  void prepared(Now now) {
    if (++pending_ == jobs_.size()) finish(now);
  }
  void finish(Now now) {
    const std::span<CryptoJob> jobs(jobs_.data(), pending_);
    if (workers_ != nullptr) {
      workers_->run(jobs);
    } else {
      for (CryptoJob& job : jobs) wg::run_crypto(job);
    }
    for (CryptoJob& job : jobs) {
      if (job.kind == CryptoJob::Kind::seal) device_.finish_seal(now, job);
      else device_.finish_open(now, job);
    }
    pending_ = 0;
  }
  std::size_t pending() const { return pending_; }

 private:
  Device& device_;
  CryptoWorkers* workers_;
  std::vector<CryptoJob> jobs_;
  std::size_t pending_ = 0;
};

// Three devices, A and C sending to B, on a manual clock; every seeded, so two runs of the
// same scenario produce the same bytes.
struct Mesh {
  Now now{Instant{} + 1000s, WallTime{} + std::chrono::hours(24 * 365 * 50)};
  RecordingIo io_a, io_b, io_c;
  SeededRandom rng_a{1}, rng_b{2}, rng_c{3};
  Device a{io_a, io_a, rng_a}, b{io_b, io_b, rng_b}, c{io_c, io_c, rng_c};
  Endpoint ep_a = Endpoint::parse("192.0.2.1:1000").value(), ep_b = Endpoint::parse("192.0.2.2:2000").value(),
           ep_c = Endpoint::parse("192.0.2.3:3000").value();
  wg::Peer* b_at_a = nullptr;
  wg::Peer* b_at_c = nullptr;
  wg::Peer* a_at_b = nullptr;
  wg::Peer* c_at_b = nullptr;

  Mesh() {
    SeededRandom keys(99);
    a.set_private_key(wg::crypto::generate_private_key(keys));
    b.set_private_key(wg::crypto::generate_private_key(keys));
    c.set_private_key(wg::crypto::generate_private_key(keys));
    b_at_a = link(a, b, ep_b, "10.0.0.2/32");
    b_at_c = link(c, b, ep_b, "10.0.0.2/32");
    a_at_b = link(b, a, ep_a, "10.0.0.1/32");
    c_at_b = link(b, c, ep_c, "10.0.0.3/32");
  }
  static wg::Peer* link(Device& self, Device& other, const Endpoint& at, const char* allowed) {
    wg::Peer* p = self.add_peer(other.identity().public_key, {});
    self.set_endpoint(*p, at);
    self.add_allowed_ip(*p, IpPrefix::parse(allowed).value());
    return p;
  }
  void tun_packet(Device& dev, const Bytes& packet) {
    Bytes frame(wg::kFrameHeadroom + packet.size() + wg::kFrameTailroom);
    std::memcpy(frame.data() + wg::kFrameHeadroom, packet.data(), packet.size());
    dev.on_tun_packet(now, frame, packet.size());
  }
  // Delivers everything queued between the senders and B until quiet (handshakes).
  void pump() {
    for (int round = 0; round < 20; ++round) {
      bool moved = false;
      for (auto [io, dev, from] : {std::tuple{&io_a, &b, ep_a}, std::tuple{&io_c, &b, ep_c}}) {
        for (Sent& s : std::exchange(io->sent, {})) {
          dev->on_datagram(now, from, s.bytes);
          moved = true;
        }
      }
      for (Sent& s : std::exchange(io_b.sent, {})) {
        (s.to == ep_a ? a : c).on_datagram(now, ep_b, s.bytes);
        moved = true;
      }
      if (!moved) return;
    }
  }
  void handshake(Device& sender, std::uint32_t src) {
    tun_packet(sender, numbered_packet(src, kAddrB, 0xffffffff, 4));
    pump();
    io_b.tun.clear();
  }
};

// Seals `count` packets from one sender, through a batch (workers) or one by one; returns the
// datagrams in the order they left.
std::vector<Bytes> seal_many(Mesh& m, Device& dev, RecordingIo& io, std::uint32_t src, std::uint32_t count,
                             CryptoWorkers* workers) {
  std::vector<Bytes> frames(128);
  Batch batch(dev, workers);
  for (std::uint32_t seq = 0; seq < count; ++seq) {
    const Bytes packet = numbered_packet(src, kAddrB, seq, 16 + (seq * 37) % 600);
    Bytes& frame = frames[batch.pending()];
    frame.assign(wg::kFrameHeadroom + packet.size() + wg::kFrameTailroom, 0);
    std::memcpy(frame.data() + wg::kFrameHeadroom, packet.data(), packet.size());
    if (workers == nullptr) {
      dev.on_tun_packet(m.now, frame, packet.size());
    } else if (dev.prepare_seal(m.now, frame, packet.size(), batch.next())) {
      batch.prepared(m.now);
    }
  }
  batch.finish(m.now);
  std::vector<Bytes> out;
  for (Sent& s : std::exchange(io.sent, {})) out.push_back(std::move(s.bytes));
  return out;
}

struct Arrival {
  Endpoint from;
  Bytes bytes;
};

struct Outcome {
  std::vector<Bytes> sealed_a, sealed_c;  // what left the senders
  std::vector<Bytes> tun;                 // what B delivered, in order
  wg::DeviceStats stats;
};

// The scenario: A sends 8300 packets, C 300; they arrive at B interleaved, in batches of 64,
// with local reordering, duplicates, a late packet inside the window, one behind it, a forgery,
// and C's new handshake in the middle (a key rotation mid-batch). parallel: seal and open on
// `threads` threads, every batch shared with the workers.
void run_scenario(unsigned threads, bool parallel, Outcome& out) {
  Mesh m;
  m.handshake(m.a, kAddrA);
  m.handshake(m.c, kAddrC);
  CryptoWorkers workers({threads, 0});
  CryptoWorkers* w = parallel ? &workers : nullptr;
  out.sealed_a = seal_many(m, m.a, m.io_a, kAddrA, 8300, w);
  out.sealed_c = seal_many(m, m.c, m.io_c, kAddrC, 300, w);

  std::vector<Arrival> arrivals;
  std::size_t ic = 0;
  std::map<std::size_t, std::vector<std::size_t>> late;  // position in A's stream -> A's packets to add there
  late[400] = {30};        // late, inside the window: accepted
  late[8250] = {40};       // 8210 behind the newest: outside the 8128-packet window, dropped
  late[8260] = {8100};     // a duplicate: dropped
  for (std::size_t i = 0; i < 8300; i += 1) {
    if (i == 30 || i == 40) continue;  // held back (delivered late above)
    arrivals.push_back({m.ep_a, out.sealed_a[i]});
    if (auto it = late.find(i); it != late.end())
      for (std::size_t j : it->second) arrivals.push_back({m.ep_a, out.sealed_a[j]});
    if (i % 7 == 3 && arrivals.size() >= 2) std::swap(arrivals[arrivals.size() - 1], arrivals[arrivals.size() - 2]);
    if (i % 28 == 0 && ic < out.sealed_c.size()) arrivals.push_back({m.ep_c, out.sealed_c[ic++]});
    if (i == 1000) arrivals.push_back({m.ep_a, out.sealed_a[999]});  // duplicated at once
    if (i == 2000) {
      Bytes forged = out.sealed_a[1999];
      forged[40] ^= 1;
      arrivals.push_back({m.ep_a, forged});
    }
  }
  while (ic < out.sealed_c.size()) arrivals.push_back({m.ep_c, out.sealed_c[ic++]});

  // C's second handshake lands in the middle of a batch: B installs a new session for C.
  m.now.mono += 6s;  // past REKEY_TIMEOUT since C's first initiation
  m.now.wall += 6s;
  m.c.initiate_handshake(*m.b_at_c, m.now);
  ASSERT_EQ(m.io_c.sent.size(), 1u);
  arrivals.insert(arrivals.begin() + 4000 + 17, Arrival{m.ep_c, m.io_c.sent.front().bytes});
  m.io_c.sent.clear();

  Batch batch(m.b, w);
  for (std::size_t start = 0; start < arrivals.size(); start += 64) {
    for (std::size_t i = start; i < std::min(start + 64, arrivals.size()); ++i) {
      Arrival& arrival = arrivals[i];
      if (parallel) {
        if (!Device::is_data_message(arrival.bytes)) batch.finish(m.now);
        if (m.b.prepare_open(m.now, arrival.from, arrival.bytes, batch.next())) batch.prepared(m.now);
      } else {
        m.b.on_datagram(m.now, arrival.from, arrival.bytes);
      }
    }
    batch.finish(m.now);
  }
  out.tun = std::move(m.io_b.tun);
  out.stats = m.b.stats();
}

Outcome scenario(unsigned threads, bool parallel) {
  Outcome out;
  run_scenario(threads, parallel, out);
  return out;
}

TEST(ParallelCrypto, OrderAndReplayWindowMatchTheSequentialDeviceByteForByte) {
  const Outcome one = scenario(1, false);
  ASSERT_FALSE(one.tun.empty());
  for (unsigned threads : {2u, 4u}) {
    SCOPED_TRACE(threads);
    const Outcome many = scenario(threads, true);
    EXPECT_EQ(many.sealed_a, one.sealed_a) << "the same datagrams, counters in the same order";
    EXPECT_EQ(many.sealed_c, one.sealed_c);
    EXPECT_EQ(many.tun, one.tun) << "the same packets reach the TUN in the same order";
    EXPECT_EQ(many.stats.rx_replayed_data, one.stats.rx_replayed_data);
    EXPECT_EQ(many.stats.rx_decrypt_failed, one.stats.rx_decrypt_failed);
    EXPECT_EQ(many.stats.rx_unknown_index, one.stats.rx_unknown_index);
    EXPECT_EQ(many.stats.handshakes_completed, one.stats.handshakes_completed);
  }
  // What that order is: per sender, the arrival order with duplicates and the too-old packet
  // removed; the late packet inside the window is accepted where it arrived.
  EXPECT_EQ(one.stats.rx_replayed_data, 3u) << "8100 again, 999 again, and 40 behind the window";
  EXPECT_EQ(one.stats.rx_decrypt_failed, 1u) << "the forgery";
  std::vector<std::uint32_t> from_a, from_c;
  for (const Bytes& p : one.tun) (source_of(p) == kAddrA ? from_a : from_c).push_back(sequence_of(p));
  EXPECT_EQ(from_a.size(), 8300u - 1) << "all of A's but the one behind the window";
  EXPECT_EQ(from_c.size(), 300u);
  EXPECT_EQ(std::count(from_a.begin(), from_a.end(), 40u), 0);
  EXPECT_EQ(std::count(from_a.begin(), from_a.end(), 30u), 1);
  const auto at30 = std::find(from_a.begin(), from_a.end(), 30u) - from_a.begin();
  EXPECT_GT(at30, 390) << "delivered where it arrived, late";
  for (std::size_t i = 1; i < from_c.size(); ++i) ASSERT_EQ(from_c[i], from_c[i - 1] + 1) << "C's packets in order";
  std::size_t out_of_order = 0;
  for (std::size_t i = 1; i < from_a.size(); ++i) out_of_order += from_a[i] < from_a[i - 1];
  EXPECT_GT(out_of_order, 500u) << "the reordering the network did is kept, not undone";
}

// Keys rotated and zeroed while a batch is in flight: the jobs keep their keypair alive (the
// AEAD reads valid keys; ASan and TSan check it), the finish drops what the retired keypair
// can no longer accept, and the keypair goes once the last job lets go.
TEST(ParallelCrypto, KeyRotationWhileABatchIsInFlight) {
  Mesh m;
  m.handshake(m.a, kAddrA);
  CryptoWorkers workers({3, 0});
  wg::Keypair* first = m.b_at_a->keypairs.current();
  ASSERT_NE(first, nullptr);
  std::weak_ptr<wg::Keypair> watch = m.b_at_a->keypairs.share(first);
  // B's side of the first session, to check what A seals on it afterwards.
  const wg::SymmetricKey first_at_b = m.a_at_b->keypairs.current()->receive_key;

  // A prepares 100 packets on its first session...
  std::vector<Bytes> frames(100);
  std::vector<CryptoJob> jobs(100);
  for (std::uint32_t i = 0; i < 100; ++i) {
    const Bytes packet = numbered_packet(kAddrA, kAddrB, i, 200);
    frames[i].assign(wg::kFrameHeadroom + packet.size() + wg::kFrameTailroom, 0);
    std::memcpy(frames[i].data() + wg::kFrameHeadroom, packet.data(), packet.size());
    ASSERT_TRUE(m.a.prepare_seal(m.now, frames[i], packet.size(), jobs[i]));
  }
  // ...then two handshakes complete before the AEAD runs: the first session goes to previous,
  // then out of A altogether (retired, its index forgotten).
  for (int round = 0; round < 2; ++round) {
    m.now.mono += 6s;
    m.now.wall += 6s;
    m.a.initiate_handshake(*m.b_at_a, m.now);
    m.pump();
  }
  EXPECT_NE(m.b_at_a->keypairs.current(), first);
  EXPECT_NE(m.b_at_a->keypairs.previous(), first);
  ASSERT_FALSE(watch.expired()) << "the jobs hold the retired keypair";
  EXPECT_TRUE(watch.lock()->retired);
  m.io_a.sent.clear();
  workers.run(jobs);
  for (CryptoJob& job : jobs) m.a.finish_seal(m.now, job);
  EXPECT_TRUE(watch.expired()) << "freed (and its keys zeroed) when the last job let go";

  // Sealed with the first session's key, counters in order (0 went with the handshake's packet).
  ASSERT_EQ(m.io_a.sent.size(), 100u);
  for (std::uint32_t i = 0; i < 100; ++i) {
    const Bytes& d = m.io_a.sent[i].bytes;
    ASSERT_EQ(load_le64(d.data() + 8), i + 1);
    Bytes plain(d.size() - wg::kDataHeaderSize - wg::kAuthTagSize);
    ASSERT_TRUE(wg::crypto::aead_decrypt(plain, ByteSpan(d).subspan(wg::kDataHeaderSize), i + 1, first_at_b, {}));
    EXPECT_EQ(sequence_of(plain), i);
  }
  m.io_a.sent.clear();

  // A sends 100 more on its current session; B opens half of them in one batch...
  for (std::uint32_t i = 0; i < 100; ++i) m.tun_packet(m.a, numbered_packet(kAddrA, kAddrB, 1000 + i, 200));
  std::vector<Bytes> sent;
  for (Sent& s : std::exchange(m.io_a.sent, {})) sent.push_back(std::move(s.bytes));
  ASSERT_EQ(sent.size(), 100u);
  m.io_b.tun.clear();
  wg::Keypair* at_b = m.a_at_b->keypairs.current();
  ASSERT_NE(at_b, nullptr);
  std::weak_ptr<wg::Keypair> watch_b = m.a_at_b->keypairs.share(at_b);
  std::vector<CryptoJob> opens(100);
  std::size_t prepared = 0;
  for (std::size_t i = 0; i < 50; ++i) prepared += m.b.prepare_open(m.now, m.ep_a, sent[i], opens[prepared]);
  ASSERT_EQ(prepared, 50u);
  workers.run(std::span(opens.data(), 50));
  for (std::size_t i = 0; i < 50; ++i) m.b.finish_open(m.now, opens[i]);
  ASSERT_EQ(m.io_b.tun.size(), 50u);
  for (std::uint32_t i = 0; i < 50; ++i) EXPECT_EQ(sequence_of(m.io_b.tun[i]), 1000 + i);

  // ...and prepares the other half, then its sessions are zeroed (a new private key) before
  // the AEAD runs.
  prepared = 0;
  for (std::size_t i = 50; i < 100; ++i) prepared += m.b.prepare_open(m.now, m.ep_a, sent[i], opens[prepared]);
  ASSERT_EQ(prepared, 50u);
  const std::uint64_t unknown_before = m.b.stats().rx_unknown_index;
  SeededRandom other(7);
  m.b.set_private_key(wg::crypto::generate_private_key(other));
  ASSERT_FALSE(watch_b.expired());
  EXPECT_TRUE(watch_b.lock()->retired);
  workers.run(std::span(opens.data(), 50));
  for (std::size_t i = 0; i < 50; ++i) m.b.finish_open(m.now, opens[i]);
  EXPECT_EQ(m.io_b.tun.size(), 50u) << "nothing from a zeroed session reaches the TUN";
  EXPECT_EQ(m.b.stats().rx_unknown_index - unknown_before, 50u);
  EXPECT_TRUE(watch_b.expired());
}

// The workers compute what one thread computes, for any mix of sizes, seals and opens.
TEST(CryptoWorkers, SameResultsOnAnyNumberOfThreads) {
  SeededRandom rng(11);
  wg::SymmetricKey key;
  rng.fill(key.span());
  constexpr std::size_t kJobs = 300;
  std::vector<Bytes> plain(kJobs);
  for (std::size_t i = 0; i < kJobs; ++i) {
    plain[i].resize(rng.next_u64() % 1500 + wg::kAuthTagSize);
    rng.fill(plain[i]);
  }
  auto seal_all = [&](unsigned threads) {
    CryptoWorkers workers({threads, 0});
    std::vector<Bytes> bufs = plain;
    std::vector<CryptoJob> jobs(kJobs);
    for (std::size_t i = 0; i < kJobs; ++i) {
      jobs[i].kind = CryptoJob::Kind::seal;
      jobs[i].key = &key;
      jobs[i].body = bufs[i].data();
      jobs[i].size = static_cast<std::uint32_t>(bufs[i].size() - wg::kAuthTagSize);
      jobs[i].counter = i * 3;
    }
    workers.run(jobs);
    EXPECT_EQ(workers.stats().jobs, kJobs);
    return bufs;
  };
  const std::vector<Bytes> one = seal_all(1);
  for (unsigned threads : {2u, 3u, 8u}) EXPECT_EQ(seal_all(threads), one) << threads << " threads";

  // Open them again, a few forged, on four threads.
  CryptoWorkers workers({4, 0});
  std::vector<Bytes> bufs = one;
  std::vector<CryptoJob> jobs(kJobs);
  for (std::size_t i = 0; i < kJobs; ++i) {
    if (i % 50 == 7) bufs[i][0] ^= 0x80;
    jobs[i].kind = CryptoJob::Kind::open;
    jobs[i].key = &key;
    jobs[i].body = bufs[i].data();
    jobs[i].size = static_cast<std::uint32_t>(bufs[i].size());
    jobs[i].counter = i * 3;
  }
  for (int repeat = 0; repeat < 20; ++repeat) {
    std::vector<Bytes> again = bufs;
    for (std::size_t i = 0; i < kJobs; ++i) jobs[i].body = again[i].data();
    workers.run(jobs);
    for (std::size_t i = 0; i < kJobs; ++i) {
      ASSERT_EQ(jobs[i].ok, i % 50 != 7) << i;
      if (jobs[i].ok) {
        ASSERT_TRUE(std::equal(plain[i].begin(), plain[i].end() - wg::kAuthTagSize, again[i].begin()));
      }
    }
  }
  EXPECT_EQ(workers.stats().parallel_batches, 20u);
}

TEST(CryptoWorkers, SmallBatchesStayOnTheLoop) {
  CryptoWorkers workers({2, 16 * 1024});
  wg::SymmetricKey key;
  Bytes buf(100 + wg::kAuthTagSize);
  std::vector<CryptoJob> jobs(4);
  for (auto& job : jobs) {
    job.key = &key;
    job.body = buf.data();
    job.size = 100;
  }
  workers.run(std::span(jobs.data(), 1));
  EXPECT_EQ(workers.stats().parallel_batches, 0u);
  EXPECT_EQ(workers.stats().batches, 1u);
  EXPECT_EQ(workers.threads(), 2u);
}

TEST(CryptoWorkers, ThreadCountFromFlagEnvironmentOrCores) {
  EXPECT_EQ(CryptoWorkers::resolve_threads(3, "5"), 3u) << "the flag wins";
  EXPECT_EQ(CryptoWorkers::resolve_threads(0, "5"), 5u);
  EXPECT_EQ(CryptoWorkers::resolve_threads(0, "1"), 1u);
  EXPECT_EQ(CryptoWorkers::resolve_threads(0, nullptr), CryptoWorkers::default_threads());
  EXPECT_EQ(CryptoWorkers::resolve_threads(0, ""), CryptoWorkers::default_threads());
  EXPECT_EQ(CryptoWorkers::resolve_threads(0, "1000"), CryptoWorkers::kMaxThreads);
  EXPECT_GE(CryptoWorkers::default_threads(), 1u);
  EXPECT_LE(CryptoWorkers::default_threads(), 8u);
  for (const char* bad : {"0", "-1", "two", "2x", " 2"})
    EXPECT_THROW(CryptoWorkers::resolve_threads(0, bad), std::invalid_argument) << bad;
}

}  // namespace
}  // namespace knit::agent
