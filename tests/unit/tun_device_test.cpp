// TunDevice against the real kernel. Every test runs in a fresh network namespace of its own
// (unshare(CLONE_NEWNET) in SetUp, back to the original in TearDown), so the host's network is
// never touched and every interface made here vanishes with the namespace.
//
//   UDP socket ──► 10.99.0.2 (route via knittun0) ──► TUN fd      (kernel → user: read)
//   UDP socket on 10.99.0.1  ◄── knittun0 ◄── crafted packet      (user → kernel: write)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "tests/support/private_netns.hpp"
#include "tun/link_config.hpp"
#include "tun/tun_device.hpp"

namespace knit::tun {
namespace {

using knit::testing::PrivateNetns;

// RFC 1071 ones' complement sum, folded, not yet inverted.
std::uint32_t sum16(ByteSpan bytes, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < bytes.size(); i += 2) sum += load_be16(&bytes[i]);
  if (bytes.size() % 2) sum += std::uint32_t{bytes.back()} << 8;
  return sum;
}
std::uint16_t finish_checksum(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

// An IPv4 UDP packet with correct header and UDP checksums (RFC 791, RFC 768).
Bytes make_udp4(IpAddress source, std::uint16_t source_port, IpAddress destination,
                std::uint16_t destination_port, ByteSpan payload) {
  const std::size_t udp_length = 8 + payload.size();
  Bytes packet(20 + udp_length, 0);
  packet[0] = 0x45;  // version 4, header 5 words
  store_be16(&packet[2], static_cast<std::uint16_t>(packet.size()));
  packet[8] = 64;  // TTL
  packet[9] = 17;  // UDP
  std::memcpy(&packet[12], source.bytes(), 4);
  std::memcpy(&packet[16], destination.bytes(), 4);
  store_be16(&packet[10], finish_checksum(sum16(ByteSpan(packet).first(20))));

  std::uint8_t* udp = &packet[20];
  store_be16(udp, source_port);
  store_be16(udp + 2, destination_port);
  store_be16(udp + 4, static_cast<std::uint16_t>(udp_length));
  std::memcpy(udp + 8, payload.data(), payload.size());
  std::uint8_t pseudo[12] = {};
  std::memcpy(pseudo, source.bytes(), 4);
  std::memcpy(pseudo + 4, destination.bytes(), 4);
  pseudo[9] = 17;
  store_be16(pseudo + 10, static_cast<std::uint16_t>(udp_length));
  std::uint16_t checksum = finish_checksum(sum16(ByteSpan(udp, udp_length), sum16(pseudo)));
  store_be16(udp + 6, checksum == 0 ? 0xffff : checksum);
  return packet;
}

// Reads packets from the TUN until one satisfies want (the kernel also sends things of its
// own, such as IPv6 router solicitations, when a link comes up). nullopt after two seconds.
std::optional<Bytes> read_until(TunDevice& device, int queue,
                                const std::function<bool(const Bytes&)>& want) {
  std::array<std::uint8_t, 65536> buffer{};
  for (int attempt = 0; attempt < 100; ++attempt) {
    pollfd p{device.fd(queue), POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) return std::nullopt;
    const long n = device.read(queue, buffer);
    if (n < 0) return std::nullopt;
    Bytes packet(buffer.begin(), buffer.begin() + n);
    if (n > 0 && want(packet)) return packet;
  }
  return std::nullopt;
}

IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }
IpPrefix prefix(const char* text) { return IpPrefix::parse(text).value(); }

const Bytes kPayload = {'h', 'e', 'l', 'l', 'o', ' ', 'k', 'n', 'i', 't'};

class TunDeviceTest : public PrivateNetns {};

TEST_F(TunDeviceTest, OpensWithTheRequestedName) {
  auto device = TunDevice::open({.name = "knittun0"});
  EXPECT_EQ(device.name(), "knittun0");
  EXPECT_EQ(device.queue_count(), 1);
  LinkConfig links;
  EXPECT_EQ(links.ifindex("knittun0"), device.ifindex());
  EXPECT_GT(device.ifindex(), 0);

  const int flags = ::fcntl(device.fd(), F_GETFL);
  EXPECT_TRUE(flags & O_NONBLOCK);
  EXPECT_TRUE(::fcntl(device.fd(), F_GETFD) & FD_CLOEXEC);
  EXPECT_EQ(device.fd(1), -1);
}

TEST_F(TunDeviceTest, KernelResolvesPercentD) {
  auto first = TunDevice::open({.name = "knit%d"});
  auto second = TunDevice::open({.name = "knit%d"});
  EXPECT_EQ(first.name(), "knit0");
  EXPECT_EQ(second.name(), "knit1");
}

TEST_F(TunDeviceTest, ReadWithNothingPendingReturnsZero) {
  auto device = TunDevice::open({.name = "knittun0"});
  std::array<std::uint8_t, 2048> buffer{};
  EXPECT_EQ(device.read(0, buffer), 0);
  EXPECT_EQ(device.read(5, buffer), -EBADF);
}

TEST_F(TunDeviceTest, ReadsTheIpv4PacketASocketSends) {
  auto device = TunDevice::open({.name = "knittun0"});
  LinkConfig links;
  ASSERT_FALSE(links.add_address(device.name(), prefix("10.99.0.1/24")));
  ASSERT_FALSE(links.set_up(device.name(), true));

  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  ::inet_pton(AF_INET, "10.99.0.2", &to.sin_addr);
  ASSERT_EQ(::sendto(sock, kPayload.data(), kPayload.size(), 0, reinterpret_cast<sockaddr*>(&to),
                     sizeof to),
            static_cast<ssize_t>(kPayload.size()))
      << std::strerror(errno);
  ::close(sock);

  auto packet = read_until(device, 0, [](const Bytes& p) { return (p[0] >> 4) == 4; });
  ASSERT_TRUE(packet) << "no IPv4 packet came out of the TUN";
  const Bytes& p = *packet;
  ASSERT_EQ(p.size(), 20 + 8 + kPayload.size());
  EXPECT_EQ(p[0] >> 4, 4);
  EXPECT_EQ(p[9], 17);
  EXPECT_EQ(IpAddress::v4(&p[12]), ip("10.99.0.1"));
  EXPECT_EQ(IpAddress::v4(&p[16]), ip("10.99.0.2"));
  EXPECT_EQ(load_be16(&p[22]), 9);
  EXPECT_EQ(Bytes(p.begin() + 28, p.end()), kPayload);
}

TEST_F(TunDeviceTest, ReadsTheIpv6PacketASocketSends) {
  auto device = TunDevice::open({.name = "knittun0"});
  LinkConfig links;
  ASSERT_FALSE(links.add_address(device.name(), prefix("fd99::1/64")));
  ASSERT_FALSE(links.set_up(device.name(), true));

  const int sock = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  to.sin6_port = htons(9);
  ::inet_pton(AF_INET6, "fd99::2", &to.sin6_addr);
  ASSERT_EQ(::sendto(sock, kPayload.data(), kPayload.size(), 0, reinterpret_cast<sockaddr*>(&to),
                     sizeof to),
            static_cast<ssize_t>(kPayload.size()))
      << std::strerror(errno);
  ::close(sock);

  // Skip the kernel's own ICMPv6 (router solicitations, MLD reports): next header 17 only.
  auto packet = read_until(device, 0, [](const Bytes& p) {
    return (p[0] >> 4) == 6 && p.size() >= 48 && p[6] == 17;
  });
  ASSERT_TRUE(packet) << "no IPv6 UDP packet came out of the TUN";
  const Bytes& p = *packet;
  EXPECT_EQ(IpAddress::v6(&p[24]), ip("fd99::2"));
  EXPECT_EQ(load_be16(&p[42]), 9);
  EXPECT_EQ(Bytes(p.begin() + 48, p.end()), kPayload);
}

TEST_F(TunDeviceTest, WrittenPacketReachesALocalSocket) {
  auto device = TunDevice::open({.name = "knittun0"});
  LinkConfig links;
  ASSERT_FALSE(links.add_address(device.name(), prefix("10.99.0.1/24")));
  ASSERT_FALSE(links.set_up(device.name(), true));

  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(sock, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_port = htons(5000);
  ::inet_pton(AF_INET, "10.99.0.1", &local.sin_addr);
  ASSERT_EQ(::bind(sock, reinterpret_cast<sockaddr*>(&local), sizeof local), 0) << std::strerror(errno);

  const Bytes packet = make_udp4(ip("10.99.0.2"), 4000, ip("10.99.0.1"), 5000, kPayload);
  EXPECT_TRUE(device.write(0, packet));

  pollfd p{sock, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 2000), 1) << "the written packet was not delivered";
  std::array<std::uint8_t, 2048> buffer{};
  sockaddr_in from{};
  socklen_t from_length = sizeof from;
  const auto n = ::recvfrom(sock, buffer.data(), buffer.size(), 0, reinterpret_cast<sockaddr*>(&from),
                            &from_length);
  ::close(sock);
  ASSERT_EQ(n, static_cast<ssize_t>(kPayload.size()));
  EXPECT_EQ(Bytes(buffer.begin(), buffer.begin() + n), kPayload);
  EXPECT_EQ(ntohs(from.sin_port), 4000);
  EXPECT_EQ(IpAddress::v4(ntohl(from.sin_addr.s_addr)), ip("10.99.0.2"));
}

TEST_F(TunDeviceTest, WriteFailsWhileDownOrForNonIpBytes) {
  auto device = TunDevice::open({.name = "knittun0"});
  const Bytes packet = make_udp4(ip("10.99.0.2"), 4000, ip("10.99.0.1"), 5000, kPayload);
  EXPECT_FALSE(device.write(0, packet));  // link down: EIO

  LinkConfig links;
  ASSERT_FALSE(links.set_up(device.name(), true));
  EXPECT_FALSE(device.write(0, Bytes(40, 0x00)));  // version nibble 0: EINVAL
  EXPECT_FALSE(device.write(3, packet));           // no such queue
}

TEST_F(TunDeviceTest, MultiQueueGivesOneFdPerQueue) {
  auto device = TunDevice::open({.name = "knitmq0", .queues = 2});
  EXPECT_EQ(device.name(), "knitmq0");
  ASSERT_EQ(device.queue_count(), 2);
  EXPECT_NE(device.fd(0), device.fd(1));
  std::array<std::uint8_t, 2048> buffer{};
  for (int queue = 0; queue < 2; ++queue) {
    ASSERT_GE(device.fd(queue), 0);
    EXPECT_NE(::fcntl(device.fd(queue), F_GETFD), -1);
    EXPECT_TRUE(::fcntl(device.fd(queue), F_GETFL) & O_NONBLOCK);
    EXPECT_EQ(device.read(queue, buffer), 0);
  }
}

void expect_one_line_error(const TunDevice::Options& options, const std::string& expected_part) {
  try {
    (void)TunDevice::open(options);
    ADD_FAILURE() << "opening \"" << options.name << "\" did not throw";
  } catch (const TunError& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_NE(message.find(expected_part), std::string::npos) << message;
    EXPECT_TRUE(error.code());
  }
}

TEST_F(TunDeviceTest, BadOptionsThrowAOneLineTunError) {
  expect_one_line_error({.name = "knit-far-too-long-x1"}, "longer than 15 characters");
  expect_one_line_error({.name = "knit/0"}, "must not contain");
  expect_one_line_error({.name = "knit0", .queues = 0}, "queue count 0");
  expect_one_line_error({.name = "knit0", .queues = TunDevice::kMaxQueues + 1}, "queue count");
}

TEST_F(TunDeviceTest, NameHeldByAnotherOpenerThrowsWithAHint) {
  auto holder = TunDevice::open({.name = "knittun0"});
  expect_one_line_error({.name = "knittun0"}, "cannot create TUN device knittun0: Device or resource busy");
  // Same name, other flags: single-queue versus multi-queue.
  expect_one_line_error({.name = "knittun0", .queues = 2}, "choose another name");
}

TEST_F(TunDeviceTest, DestroyingTheDeviceRemovesTheInterface) {
  LinkConfig links;
  {
    auto device = TunDevice::open({.name = "knitmq0", .queues = 3});
    ASSERT_TRUE(links.ifindex("knitmq0"));
  }
  EXPECT_FALSE(links.ifindex("knitmq0"));
}

TEST_F(TunDeviceTest, MovingKeepsTheInterfaceAlive) {
  LinkConfig links;
  auto device = TunDevice::open({.name = "knittun0"});
  const int fd = device.fd();
  TunDevice moved = std::move(device);
  EXPECT_EQ(moved.fd(), fd);
  EXPECT_EQ(moved.name(), "knittun0");
  EXPECT_EQ(device.queue_count(), 0);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_TRUE(links.ifindex("knittun0"));

  auto other = TunDevice::open({.name = "knittun1"});
  moved = std::move(other);  // closes knittun0
  EXPECT_FALSE(links.ifindex("knittun0"));
  EXPECT_TRUE(links.ifindex("knittun1"));
}

}  // namespace
}  // namespace knit::tun
