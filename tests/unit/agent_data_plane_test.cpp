// The data plane between two fake TUNs (socketpairs standing in for the kernel's queues) and
// fake transports that carry datagrams from one plane to the other: a packet written into A's
// TUN leaves A sealed through the transport (handshake first), comes out of B's TUN intact, and
// back; the packet filter sits on the path (shields refuse an unsolicited packet); the
// transport is flushed after each burst of work.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>

#include <chrono>
#include <deque>

#include "agent/data_plane.hpp"
#include "base/random.hpp"
#include "nat/packet_builder.hpp"
#include "wg/crypto.hpp"

namespace knit::agent {
namespace {

using namespace std::chrono_literals;

// Records what the device sends; the test carries it to the other plane.
class FakeTransport final : public wg::Transport {
 public:
  void send(const wg::Peer&, std::span<const ByteSpan> datagrams) override {
    for (ByteSpan d : datagrams) queued.emplace_back(d.begin(), d.end());
  }
  void send_reply(const Endpoint&, ByteSpan d) override { queued.emplace_back(d.begin(), d.end()); }
  void flush() override { ++flushes; }
  std::deque<Bytes> queued;
  int flushes = 0;
};

// One plane and the test's end of its TUN.
struct Side {
  explicit Side(asio::io_context& io, const char* name, bool vnet_header = false, CryptoWorkers::Options crypto = {}) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
    tun = std::make_unique<tun::TunDevice>(tun::TunDevice::adopt(name, fds[0], vnet_header));
    wire = fds[1];
    plane = std::make_unique<DataPlane>(io, *tun, transport, 1420, crypto);
  }
  ~Side() {
    plane.reset();
    ::close(wire);
  }
  void write_packet(const Bytes& p) const { ASSERT_EQ(::write(wire, p.data(), p.size()), static_cast<ssize_t>(p.size())); }
  std::optional<Bytes> read_packet() const {
    Bytes b(70000);
    const auto n = ::read(wire, b.data(), b.size());
    if (n <= 0) return std::nullopt;
    b.resize(static_cast<std::size_t>(n));
    return b;
  }
  FakeTransport transport;
  std::unique_ptr<tun::TunDevice> tun;
  int wire = -1;
  std::unique_ptr<DataPlane> plane;
};

// IPv4/UDP from src to dst, 100 bytes of payload.
Bytes udp_packet(std::uint32_t src, std::uint32_t dst, std::uint8_t fill) {
  Bytes p(128, fill);
  p[0] = 0x45;
  p[1] = 0;
  store_be16(p.data() + 2, static_cast<std::uint16_t>(p.size()));
  store_be16(p.data() + 4, 0);
  store_be16(p.data() + 6, 0);
  p[8] = 64;
  p[9] = 17;
  store_be16(p.data() + 10, 0);
  store_be32(p.data() + 12, src);
  store_be32(p.data() + 16, dst);
  store_be16(p.data() + 20, 40000);
  store_be16(p.data() + 22, 9);
  store_be16(p.data() + 24, static_cast<std::uint16_t>(p.size() - 20));
  store_be16(p.data() + 26, 0);  // no UDP checksum (IPv4 allows it)
  // IPv4 header checksum.
  std::uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += load_be16(p.data() + i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  store_be16(p.data() + 10, static_cast<std::uint16_t>(~sum));
  return p;
}

// The TCP checksum of an IPv4 packet without options, recomputed in full.
std::uint16_t tcp_checksum(const Bytes& p) {
  std::uint32_t sum = load_be16(p.data() + 12) + load_be16(p.data() + 14) + load_be16(p.data() + 16) +
                      load_be16(p.data() + 18) + 6 + static_cast<std::uint32_t>(p.size() - 20);
  for (std::size_t i = 20; i + 1 < p.size(); i += 2)
    if (i != 36) sum += load_be16(p.data() + i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

constexpr std::uint32_t kA = 0x0a000001, kB = 0x0a000002;

class DataPlaneTest : public ::testing::Test {
 protected:
  explicit DataPlaneTest(bool vnet_header = false, CryptoWorkers::Options crypto = {})
      : a_(io_, "fake-a", vnet_header, crypto), b_(io_, "fake-b", vnet_header, crypto) {
    SeededRandom keys(5);
    const wg::PrivateKey ka = wg::crypto::generate_private_key(keys);
    const wg::PrivateKey kb = wg::crypto::generate_private_key(keys);
    const wg::PublicKey pa = wg::crypto::public_key_of(ka);
    const wg::PublicKey pb = wg::crypto::public_key_of(kb);
    a_.plane->configure([&](wg::Device& d, wg::Now now) {
      d.set_private_key(ka);
      wg::Peer* p = d.add_peer(pb, now);
      d.set_endpoint(*p, Endpoint::parse("192.0.2.2:51820").value());
      d.add_allowed_ip(*p, IpPrefix::parse("10.0.0.2/32").value());
    });
    b_.plane->configure([&](wg::Device& d, wg::Now now) {
      d.set_private_key(kb);
      wg::Peer* p = d.add_peer(pa, now);
      d.set_endpoint(*p, Endpoint::parse("192.0.2.1:51820").value());
      d.add_allowed_ip(*p, IpPrefix::parse("10.0.0.1/32").value());
    });
    a_.plane->start();
    b_.plane->start();
  }

  void run() {
    io_.restart();
    io_.run_for(20ms);
  }
  // Carries what each side's transport queued to the other side, until both are quiet; with
  // batched, all of a side's datagrams in one batch (as one recvmmsg would hand them over).
  void carry(bool batched = false) {
    for (int i = 0; i < 20; ++i) {
      run();
      bool moved = false;
      for (auto [from, to, addr] : {std::tuple{&a_, &b_, "192.0.2.1:51820"}, std::tuple{&b_, &a_, "192.0.2.2:51820"}}) {
        if (batched && !from->transport.queued.empty()) {
          std::deque<Bytes> all = std::move(from->transport.queued);
          from->transport.queued.clear();
          std::vector<ReceivedDatagram> batch;
          for (Bytes& d : all) batch.push_back({Endpoint::parse(addr).value(), MutableByteSpan(d)});
          to->plane->on_wireguard(DataPlane::now(), batch);
          moved = true;
        }
        while (!from->transport.queued.empty()) {
          Bytes d = std::move(from->transport.queued.front());
          from->transport.queued.pop_front();
          const ReceivedDatagram r{Endpoint::parse(addr).value(), MutableByteSpan(d)};
          to->plane->on_wireguard(DataPlane::now(), std::span(&r, 1));
          moved = true;
        }
      }
      if (!moved) break;
    }
  }

  asio::io_context io_;
  Side a_, b_;
};

TEST_F(DataPlaneTest, APacketCrossesSealedAndComesOutIntact) {
  const Bytes out = udp_packet(kA, kB, 0x61);
  a_.write_packet(out);
  carry();
  auto got = b_.read_packet();
  ASSERT_TRUE(got) << "the packet waited for the handshake and then arrived";
  EXPECT_EQ(*got, out);
  EXPECT_EQ(a_.plane->device().stats().handshakes_completed + b_.plane->device().stats().handshakes_completed, 2u);
  EXPECT_GT(a_.transport.flushes, 0) << "the transport is flushed after work";

  const Bytes back = udp_packet(kB, kA, 0x62);
  b_.write_packet(back);
  carry();
  auto reply = a_.read_packet();
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply, back);
}

TEST_F(DataPlaneTest, ThePacketFilterSitsOnThePath) {
  b_.plane->filter().set_mesh_address(IpAddress::v4(kB));
  b_.plane->filter().set_shields_up(true);
  a_.write_packet(udp_packet(kA, kB, 0x71));
  carry();
  EXPECT_FALSE(b_.read_packet()) << "shields up: an unsolicited packet from the mesh is refused";
  EXPECT_EQ(b_.plane->filter().counters().refused_v4, 1u);

  // B's own flow opens the way back.
  b_.write_packet(udp_packet(kB, kA, 0x72));
  carry();
  ASSERT_TRUE(a_.read_packet());
  // A's answer matches B's flow only if it comes from the port B sent to.
  Bytes answer = udp_packet(kA, kB, 0x73);
  store_be16(answer.data() + 20, 9);
  store_be16(answer.data() + 22, 40000);
  a_.write_packet(answer);
  carry();
  EXPECT_TRUE(b_.read_packet()) << "replies to B's own flows pass";
}

TEST_F(DataPlaneTest, PacketsForNoPeerAreCountedNotSent) {
  a_.write_packet(udp_packet(kA, 0x0a000063, 0x81));
  run();
  EXPECT_TRUE(a_.transport.queued.empty());
  EXPECT_EQ(a_.plane->device().stats().tx_no_route, 1u);
}

// IPv4 TCP SYN from src to dst with an MSS option of `mss`, checksums right.
Bytes syn_packet(std::uint32_t src, std::uint32_t dst, std::uint16_t mss) {
  Bytes p(44, 0);
  p[0] = 0x45;
  store_be16(p.data() + 2, 44);
  p[8] = 64;
  p[9] = 6;
  store_be32(p.data() + 12, src);
  store_be32(p.data() + 16, dst);
  std::uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += load_be16(p.data() + i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  store_be16(p.data() + 10, static_cast<std::uint16_t>(~sum));
  std::uint8_t* t = p.data() + 20;
  store_be16(t, 40000);
  store_be16(t + 2, 443);
  store_be32(t + 4, 1);
  t[12] = 6 << 4;
  t[13] = 0x02;
  store_be16(t + 14, 64240);
  t[20] = 2;
  t[21] = 4;
  store_be16(t + 22, mss);
  store_be16(t + 16, tcp_checksum(p));
  return p;
}

TEST_F(DataPlaneTest, SynsAreClampedToThePeersPathBothWays) {
  // A knows its path to B carries a tunnel MTU of 1216; B knows nothing (its device MTU, 1420).
  a_.plane->set_peer_mtu([](const wg::PublicKey&) { return std::size_t{1216}; });
  a_.write_packet(syn_packet(kA, kB, 1460));
  carry();
  auto got = b_.read_packet();
  ASSERT_TRUE(got);
  EXPECT_EQ(load_be16(got->data() + 42), 1176) << "outbound: clamped at A to 1216 - 40";
  EXPECT_EQ(load_be16(got->data() + 36), tcp_checksum(*got));
  EXPECT_EQ(a_.plane->mss_clamp_stats().clamped, 1u);

  // B's SYN (its own MSS 1380 fits B's MTU) is clamped again on the way into A's TUN.
  b_.write_packet(syn_packet(kB, kA, 1380));
  carry();
  got = a_.read_packet();
  ASSERT_TRUE(got);
  EXPECT_EQ(load_be16(got->data() + 42), 1176) << "inbound: clamped at A as well";
  EXPECT_EQ(load_be16(got->data() + 36), tcp_checksum(*got));
  EXPECT_EQ(a_.plane->mss_clamp_stats().clamped, 2u);
  EXPECT_EQ(b_.plane->mss_clamp_stats().clamped, 0u);

  // Off (KNIT_PMTU=off): nothing changes.
  a_.plane->set_mss_clamp(false);
  a_.write_packet(syn_packet(kA, kB, 1460));
  carry();
  got = b_.read_packet();
  ASSERT_TRUE(got);
  EXPECT_EQ(load_be16(got->data() + 42), 1380) << "B still clamps to its own device MTU";
}

TEST_F(DataPlaneTest, PacketsTooBigForAProvenPathAreAnsweredAsARouterWould) {
  // A's path to B is proven to carry a tunnel MTU of 1216 (PathManager::proven_tunnel_limits).
  const wg::Peer* b = nullptr;
  a_.plane->configure([&](wg::Device& d, wg::Now) { b = d.peer_for(IpAddress::v4(kB)); });
  ASSERT_NE(b, nullptr);
  a_.plane->set_mtu_limits({{b->public_key, 1216}});
  const Endpoint from(IpAddress::v4(kA), 40000), to(IpAddress::v4(kB), 9);
  const nat::Ipv4Options df{.dont_fragment = true};

  // 1300 bytes with DF: not sealed; the host gets ICMP 3/4 with the MTU, from B's address.
  a_.write_packet(nat::make_udp(from, to, Bytes(1272, 1), df));
  run();
  EXPECT_TRUE(a_.transport.queued.empty()) << "an outer packet the path drops is never sent";
  auto answer = a_.read_packet();
  ASSERT_TRUE(answer);
  const nat::PacketSummary s = nat::summarize(*answer);
  EXPECT_EQ(s.icmp_type, 3);
  EXPECT_EQ(s.icmp_code, 4);
  EXPECT_EQ(s.source.address(), IpAddress::v4(kB));
  EXPECT_EQ(s.destination.address(), IpAddress::v4(kA));
  EXPECT_EQ(load_be16(answer->data() + 26), 1216);
  EXPECT_TRUE(nat::verify_checksums(*answer).all());
  EXPECT_EQ(a_.plane->too_big_stats().answered, 1u);

  // What fits goes; so does IPv4 without DF (the sender allowed fragmentation).
  a_.write_packet(nat::make_udp(from, to, Bytes(1188, 2), df));
  carry();
  ASSERT_TRUE(b_.read_packet());
  a_.write_packet(nat::make_udp(from, to, Bytes(1272, 3)));
  carry();
  auto got = b_.read_packet();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->size(), 1300u);
  EXPECT_EQ(a_.plane->too_big_stats().fragmentable, 1u);

  // A flood is answered at the limiter's rate, the rest dropped and counted.
  for (int i = 0; i < 40; ++i) a_.write_packet(nat::make_udp(from, to, Bytes(1272, 4), df));
  run();
  EXPECT_TRUE(a_.transport.queued.empty());
  EXPECT_EQ(a_.plane->too_big_stats().answered + a_.plane->too_big_stats().rate_limited, 41u);
  EXPECT_GE(a_.plane->too_big_stats().rate_limited, 15u);

  // The limit lifted (the path grew, or B went to the relay): everything is sealed again.
  a_.plane->set_mtu_limits({});
  while (a_.read_packet()) {
  }
  a_.write_packet(nat::make_udp(from, to, Bytes(1272, 5), df));
  carry();
  EXPECT_TRUE(b_.read_packet());
}

// ---------------------------------------------------------------- offloads

class DataPlaneOffloadTest : public DataPlaneTest {
 protected:
  DataPlaneOffloadTest() : DataPlaneTest(true) {}
};

// An IPv4 TCP super-packet of `segments` x 1000 bytes from A to B, as a TSO-capable TUN hands
// it over: virtio header first, the TCP checksum holding only the pseudo-header sum.
Bytes tso_read(int segments) {
  const std::size_t size = 40 + 1000 * static_cast<std::size_t>(segments);
  Bytes p(tun::kVirtioNetHeaderSize + size, 0);
  tun::VirtioNetHeader h;
  h.flags = tun::VirtioNetHeader::kNeedsCsum;
  h.gso_type = tun::VirtioNetHeader::kGsoTcpV4;
  h.gso_size = 1000;
  h.hdr_len = 40;
  h.csum_start = 20;
  h.csum_offset = 16;
  h.write(p.data());
  std::uint8_t* ip = p.data() + tun::kVirtioNetHeaderSize;
  ip[0] = 0x45;
  store_be16(ip + 2, static_cast<std::uint16_t>(size));
  store_be16(ip + 4, 7);
  store_be16(ip + 6, 0x4000);
  ip[8] = 64;
  ip[9] = 6;
  store_be32(ip + 12, kA);
  store_be32(ip + 16, kB);
  store_be16(ip + 10, static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate({ip, 20}))));
  std::uint8_t* t = ip + 20;
  store_be16(t, 40000);
  store_be16(t + 2, 5201);
  store_be32(t + 4, 1000);
  store_be32(t + 8, 1);
  t[12] = 5 << 4;
  t[13] = 0x18;  // ACK | PSH
  store_be16(t + 14, 500);
  for (std::size_t i = 40; i < size; ++i) ip[i] = static_cast<std::uint8_t>(i * 7);
  store_be16(t + 16, checksum_fold(tun::pseudo_header_sum({ip + 12, 4}, {ip + 16, 4}, 6,
                                                                static_cast<std::uint32_t>(size - 20))));
  return p;
}

std::vector<Bytes> split(ByteSpan with_header) {
  tun::Segmenter s;
  std::vector<Bytes> out;
  const auto h = tun::VirtioNetHeader::parse(with_header.data());
  if (s.start(h, with_header.subspan(tun::kVirtioNetHeaderSize)) != tun::OffloadError::ok) return out;
  Bytes buffer(70000);
  while (const std::size_t n = s.next(buffer)) out.emplace_back(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
  return out;
}

TEST_F(DataPlaneOffloadTest, ASuperPacketIsSplitSealedPerSegmentAndCoalescedAgain) {
  // A first packet makes the handshake; its datagrams are carried one by one.
  Bytes first(tun::kVirtioNetHeaderSize, 0);
  const Bytes hello = udp_packet(kA, kB, 0x61);
  first.insert(first.end(), hello.begin(), hello.end());
  a_.write_packet(first);
  carry();
  auto got = b_.read_packet();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, first) << "a packet without offload work keeps a zero header";

  const Bytes super = tso_read(5);
  a_.write_packet(super);
  run();
  EXPECT_EQ(a_.transport.queued.size(), 5u) << "one datagram per segment";
  EXPECT_EQ(a_.plane->tun_super_packets(), 1u);
  carry(/*batched=*/true);
  got = b_.read_packet();
  ASSERT_TRUE(got);
  const auto h = tun::VirtioNetHeader::parse(got->data());
  EXPECT_EQ(h.gso_type, tun::VirtioNetHeader::kGsoTcpV4) << "the five segments went to the TUN as one";
  EXPECT_EQ(h.gso_size, 1000);
  EXPECT_EQ(got->size(), super.size());
  const std::vector<Bytes> sent = split(super), received = split(*got);
  ASSERT_EQ(sent.size(), 5u);
  EXPECT_EQ(received, sent) << "the same segments, checksums and all";
  EXPECT_FALSE(b_.read_packet());
  EXPECT_EQ(b_.plane->coalescer_stats().packets_merged, 4u);
  EXPECT_EQ(a_.plane->tun_offload_errors() + b_.plane->tun_offload_errors(), 0u);
}

TEST_F(DataPlaneOffloadTest, AMalformedSuperPacketIsCountedAndDropped) {
  Bytes bad = tso_read(3);
  bad[tun::kVirtioNetHeaderSize] = 0x47;  // IHL 7: the TCP header moves past what is there
  bad.resize(tun::kVirtioNetHeaderSize + 24);
  a_.write_packet(bad);
  run();
  EXPECT_EQ(a_.plane->tun_offload_errors(), 1u);
  EXPECT_TRUE(a_.transport.queued.empty());
}

// Both cores: the same paths with the AEAD of every batch shared with a worker thread
// (crypto_workers.hpp); packets come out in the order they went in.
class DataPlaneParallelTest : public DataPlaneTest {
 protected:
  DataPlaneParallelTest() : DataPlaneTest(false, {2, 0}) {}
};

TEST_F(DataPlaneParallelTest, BatchesSealedAndOpenedOnTwoThreadsKeepTheirOrder) {
  a_.write_packet(udp_packet(kA, kB, 0xee));
  carry();
  ASSERT_TRUE(b_.read_packet()) << "the handshake, then the first packet";
  for (int round = 0; round < 3; ++round) {
    std::vector<Bytes> sent;
    for (int i = 0; i < 100; ++i) {
      sent.push_back(udp_packet(kA, kB, static_cast<std::uint8_t>(i)));
      a_.write_packet(sent.back());
    }
    carry(/*batched=*/true);
    for (int i = 0; i < 100; ++i) {
      auto got = b_.read_packet();
      ASSERT_TRUE(got) << i;
      ASSERT_EQ(*got, sent[static_cast<std::size_t>(i)]) << "packet " << i << " in order";
    }
    EXPECT_FALSE(b_.read_packet());
  }
  EXPECT_GT(a_.plane->crypto().stats().parallel_batches, 0u);
  EXPECT_GT(b_.plane->crypto().stats().parallel_batches, 0u);
  EXPECT_EQ(b_.plane->device().stats().rx_replayed_data + b_.plane->device().stats().rx_decrypt_failed, 0u);
}

class DataPlaneParallelOffloadTest : public DataPlaneTest {
 protected:
  DataPlaneParallelOffloadTest() : DataPlaneTest(true, {2, 0}) {}
};

TEST_F(DataPlaneParallelOffloadTest, ASuperPacketSplitIntoTheBatchFramesComesOutWhole) {
  Bytes first(tun::kVirtioNetHeaderSize, 0);
  const Bytes hello = udp_packet(kA, kB, 0x61);
  first.insert(first.end(), hello.begin(), hello.end());
  a_.write_packet(first);
  carry();
  ASSERT_TRUE(b_.read_packet());

  const Bytes super = tso_read(40);
  a_.write_packet(super);
  run();
  EXPECT_EQ(a_.transport.queued.size(), 40u);
  carry(/*batched=*/true);
  auto got = b_.read_packet();
  ASSERT_TRUE(got);
  EXPECT_EQ(split(*got), split(super)) << "the same segments, in order, checksums and all";
  EXPECT_GT(a_.plane->crypto().stats().parallel_batches, 0u);
  EXPECT_EQ(a_.plane->tun_offload_errors() + b_.plane->tun_offload_errors(), 0u);
}

}  // namespace
}  // namespace knit::agent
