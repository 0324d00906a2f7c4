// The STUN server on sockets: a thin Asio adapter around StunResponder. It runs in the caller's
// io_context (knit-stun's own, or knit-relay's next to its other listeners) and owns nothing
// else: no threads, no timers.
//
// Each address group gets up to four UDP sockets (RFC 5780: A:p, A:q, B:p, B:q) and one
// responder; several groups may be served at once (e.g. a relay's IPv4 and IPv6 addresses,
// each without alternates):
//
//   asio::io_context io;
//   punch::StunServer server(io, {{.primary = *Endpoint::parse("198.51.100.1:3478"),
//                                  .alternate_ip = IpAddress::parse("198.51.100.2"),
//                                  .alternate_port = 3479}});
//   if (auto ec = server.start()) fail(server.error_context() + ": " + ec.message());
//   io.run();      // server.stop() closes the sockets; pending handlers end quietly
//
// A wildcard primary (0.0.0.0 or ::) is allowed without an alternate IP: the kernel reports each
// request's destination (IP_PKTINFO / IPV6_PKTINFO) and the answer leaves from that address,
// which is the one the client and its NAT expect (NAT.md, "bind the public address").
// A primary or alternate port of 0 binds an ephemeral port (tests); local_endpoints() tells it.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "base/ip.hpp"
#include "punch/stun/responder.hpp"

namespace knit::punch {

struct StunServerCounters {
  StunResponderCounters responder{};  // summed over the groups
  std::uint64_t received = 0;
  std::uint64_t sent = 0;
  std::uint64_t send_errors = 0;
  std::uint64_t receive_errors = 0;
  std::uint64_t drop_no_socket = 0;  // the reply's source has no socket (cannot happen when the groups are valid)
};

class StunServer {
 public:
  StunServer(asio::io_context& io, std::vector<StunAddressGroup> groups, StunResponderOptions options = {});
  ~StunServer();
  StunServer(const StunServer&) = delete;
  StunServer& operator=(const StunServer&) = delete;

  // Validates the groups and binds every socket; on failure nothing stays bound and
  // error_context() says which address failed.
  std::error_code start();
  void stop();
  bool running() const { return !sockets_.empty(); }
  const std::string& error_context() const { return error_context_; }

  // The bound (address, port) of every socket, group by group.
  std::vector<Endpoint> local_endpoints() const;
  // The groups as served (ephemeral ports resolved).
  std::vector<StunAddressGroup> groups() const;
  StunServerCounters counters() const;

 private:
  struct Socket;
  std::error_code open(std::size_t group, const IpAddress& ip, std::uint16_t& port);
  void arm(Socket& s);
  void drain(Socket& s);
  void send(std::size_t group, const StunReply& reply);

  asio::io_context& io_;
  std::vector<StunAddressGroup> groups_;
  StunResponderOptions options_;
  std::vector<StunResponder> responders_;
  std::vector<std::unique_ptr<Socket>> sockets_;
  std::string error_context_;
  std::vector<std::uint8_t> buffer_;
  StunServerCounters counters_;
};

}  // namespace knit::punch
