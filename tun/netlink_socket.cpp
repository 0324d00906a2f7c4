#include "tun/netlink_socket.hpp"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace knit::tun::netlink {
namespace {

std::error_code last_error() { return {errno, std::system_category()}; }

}  // namespace

Socket::Socket() : buffer_(8192) {
  fd_ = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd_ < 0) throw std::system_error(last_error(), "cannot open a netlink socket");
  // Acknowledgements then carry only the error, not a copy of the request. Older kernels
  // lack the option, which only costs a few bytes, so its failure is ignored.
  int one = 1;
  (void)::setsockopt(fd_, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);

  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;  // nl_pid 0: the kernel picks a unique port id
  socklen_t length = sizeof local;
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &length) != 0) {
    const auto error = last_error();
    ::close(fd_);
    throw std::system_error(error, "cannot bind a netlink socket");
  }
  port_id_ = local.nl_pid;
}

Socket::Socket(Socket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      port_id_(other.port_id_),
      sequence_(other.sequence_),
      buffer_(std::move(other.buffer_)) {}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    port_id_ = other.port_id_;
    sequence_ = other.sequence_;
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

std::error_code Socket::send(ByteSpan bytes) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    const auto sent = ::sendto(fd_, bytes.data(), bytes.size(), 0,
                               reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
    if (sent == static_cast<ssize_t>(bytes.size())) return {};
    if (sent >= 0) return std::error_code(EMSGSIZE, std::system_category());
    if (errno != EINTR) return last_error();
  }
}

std::error_code Socket::receive(Bytes& datagram) {
  for (;;) {
    // Peek at the size first so a large dump datagram is never truncated.
    const auto size = ::recv(fd_, nullptr, 0, MSG_PEEK | MSG_TRUNC);
    if (size < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    if (static_cast<std::size_t>(size) > datagram.size()) datagram.resize(static_cast<std::size_t>(size));
    const auto received = ::recv(fd_, datagram.data(), datagram.size(), 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      return last_error();
    }
    datagram.resize(static_cast<std::size_t>(received));
    return {};
  }
}

std::error_code Socket::transact(Request& request,
                                 const std::function<void(const Message&)>& on_reply) {
  const bool dump = (request.flags() & NLM_F_DUMP) == NLM_F_DUMP;
  if (!dump) request.set_flags(static_cast<std::uint16_t>(request.flags() | NLM_F_ACK));
  const std::uint32_t sequence = ++sequence_;
  if (auto error = send(request.finish(sequence))) return error;

  for (;;) {
    buffer_.resize(buffer_.capacity());
    if (auto error = receive(buffer_)) return error;
    for (const Message& message : split_messages(buffer_)) {
      // Anything not answering this request (a stale reply, a stray sender) is ignored.
      if (message.sequence != sequence || message.port_id != port_id_) continue;
      if (message.type == NLMSG_ERROR) {
        // struct nlmsgerr: a negative errno, or 0 for an acknowledgement.
        const auto error = read_header<int>(message.payload);
        if (!error) return std::error_code(EBADMSG, std::system_category());
        if (*error == 0) return {};
        return {-*error, std::system_category()};
      }
      if (message.type == NLMSG_DONE) {
        // A dump ends here; its payload may carry the error that cut it short.
        const auto error = read_header<int>(message.payload);
        if (error && *error < 0) return {-*error, std::system_category()};
        return {};
      }
      if (message.type == NLMSG_NOOP || message.type == NLMSG_OVERRUN) continue;
      if (on_reply) on_reply(message);
    }
  }
}

}  // namespace knit::tun::netlink
