// A blocking NETLINK_ROUTE socket that sends one request at a time and collects its reply.
// It belongs to the network namespace of the thread that created it, whatever happens later.
#pragma once

#include <cstdint>
#include <functional>
#include <system_error>

#include "base/bytes.hpp"
#include "tun/netlink_message.hpp"

namespace knit::tun::netlink {

class Socket {
 public:
  Socket();  // throws std::system_error
  Socket(Socket&& other) noexcept;
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket();

  // Sends the request and waits for the kernel's answer. A request is acknowledged (NLM_F_ACK
  // is added); a dump (NLM_F_DUMP) ends with NLMSG_DONE. Every reply message other than the
  // acknowledgement goes to on_reply. Returns the kernel's error (errno values), empty on success.
  std::error_code transact(Request& request,
                           const std::function<void(const Message&)>& on_reply = {});

 private:
  std::error_code send(ByteSpan bytes);
  std::error_code receive(Bytes& datagram);

  int fd_ = -1;
  std::uint32_t port_id_ = 0;
  std::uint32_t sequence_ = 0;
  Bytes buffer_;
};

}  // namespace knit::tun::netlink
