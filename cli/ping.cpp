#include "cli/ping.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "base/checksum.hpp"
#include "cli/client.hpp"

namespace knit::cli {

namespace {

constexpr std::uint8_t kEchoRequestV4 = 8;
constexpr std::uint8_t kEchoReplyV4 = 0;
constexpr std::uint8_t kEchoRequestV6 = 128;
constexpr std::uint8_t kEchoReplyV6 = 129;
constexpr std::size_t kEchoHeader = 8;
constexpr char kPayload[] = "knit ping 0123456789abcdef";

}  // namespace

Bytes make_echo_request(bool v6, std::uint16_t identifier, std::uint16_t sequence, ByteSpan data) {
  Bytes packet(kEchoHeader + data.size(), 0);
  packet[0] = v6 ? kEchoRequestV6 : kEchoRequestV4;
  store_be16(packet.data() + 4, identifier);
  store_be16(packet.data() + 6, sequence);
  std::copy(data.begin(), data.end(), packet.begin() + kEchoHeader);
  if (!v6) store_be16(packet.data() + 2, internet_checksum(packet));
  return packet;
}

bool is_echo_reply(ByteSpan datagram, bool v6, bool skip_ip_header, bool check_identifier,
                   std::uint16_t identifier, std::uint16_t sequence) {
  if (skip_ip_header) {
    if (datagram.empty() || (datagram[0] >> 4) != 4) return false;
    const std::size_t header = static_cast<std::size_t>(datagram[0] & 0x0f) * 4;
    if (header < 20 || datagram.size() < header) return false;
    datagram = datagram.subspan(header);
  }
  if (datagram.size() < kEchoHeader) return false;
  if (datagram[0] != (v6 ? kEchoReplyV6 : kEchoReplyV4) || datagram[1] != 0) return false;
  if (check_identifier && load_be16(datagram.data() + 4) != identifier) return false;
  return load_be16(datagram.data() + 6) == sequence;
}

IcmpPinger::IcmpPinger(const IpAddress& target) : target_(target) {
  const int family = target.is_v4() ? AF_INET : AF_INET6;
  const int protocol = target.is_v4() ? static_cast<int>(IPPROTO_ICMP) : static_cast<int>(IPPROTO_ICMPV6);
  fd_ = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, protocol);
  if (fd_ < 0) {
    const int dgram_error = errno;
    fd_ = ::socket(family, SOCK_RAW | SOCK_CLOEXEC, protocol);
    if (fd_ < 0) {
      throw CliError(std::string("cannot open an ICMP socket (") + std::strerror(dgram_error) +
                     "): run knit ping as root, or allow unprivileged ping with "
                     "`sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`");
    }
    raw_ = true;
    identifier_ = static_cast<std::uint16_t>(::getpid() ^ 0x4b4e);  // "KN"
  }
}

IcmpPinger::~IcmpPinger() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<double> IcmpPinger::echo(std::uint16_t sequence, std::chrono::milliseconds timeout) {
  const bool v6 = target_.is_v6();
  const Bytes request = make_echo_request(
      v6, identifier_, sequence, ByteSpan(reinterpret_cast<const std::uint8_t*>(kPayload), sizeof kPayload - 1));
  sockaddr_storage to{};
  const unsigned to_length = Endpoint(target_, 0).to_sockaddr(to);
  const auto sent_at = std::chrono::steady_clock::now();
  if (::sendto(fd_, request.data(), request.size(), 0, reinterpret_cast<const sockaddr*>(&to), to_length) < 0) {
    const int error = errno;
    // No route or an unreachable network is an answer of sorts: the echo is lost, not the run.
    if (error == ENETUNREACH || error == EHOSTUNREACH || error == ENOBUFS) return std::nullopt;
    throw CliError("cannot send an ICMP echo to " + target_.to_string() + ": " + std::strerror(error));
  }
  const auto deadline = sent_at + timeout;
  std::uint8_t buffer[2048];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;
    sockaddr_storage from{};
    socklen_t from_length = sizeof from;
    const ssize_t n = ::recvfrom(fd_, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&from), &from_length);
    if (n < 0) continue;  // an ICMP error queued on the socket, or EINTR
    auto source = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&from));
    if (!source || source->address() != target_) continue;
    if (!is_echo_reply(ByteSpan(buffer, static_cast<std::size_t>(n)), v6, raw_ && !v6, raw_, identifier_, sequence))
      continue;
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sent_at).count();
  }
}

}  // namespace knit::cli
