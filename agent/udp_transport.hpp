// knitd's UDP socket as the WireGuard core's transport. On its own it is the plain `wg` mode:
// every datagram for a peer goes to the peer's endpoint. In a mesh it is also the socket the
// mesh transport (mesh_transport.hpp) shares, because WireGuard, disco and STUN use one port:
// the hole a probe punches in a NAT is the hole WireGuard then uses (docs/ARCHITECTURE.md).
//
//   send(peer) / send_reply / send_to ──► queue ──flush()──► sendmmsg
//   readable ──► recvmmsg ──► classify_datagram ─┬─ WireGuard ──► WireGuardReceiver, a batch
//                                                 └─ disco, STUN ─► OtherDatagrams (the mesh),
//                                                                   else counted and dropped
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <system_error>

#include "agent/datagram.hpp"
#include "net/udp_socket.hpp"
#include "wg/transport.hpp"

namespace knit::agent {

class UdpTransport final : public wg::Transport {
 public:
  // Disco and STUN datagrams, for the mesh while this host is joined.
  class OtherDatagrams {
   public:
    virtual ~OtherDatagrams() = default;
    virtual void on_other(wg::Now now, DatagramKind kind, const Endpoint& from, MutableByteSpan bytes) = 0;
    // After a burst of receiving: send what handling the datagrams queued.
    virtual void after_receive() = 0;
  };

  struct Options {
    std::uint16_t port = 0;  // 0: a random free port
    // Called whenever the bound port changes (to remember it); may be empty.
    std::function<void(std::uint16_t)> on_port_changed;
    // UDP_SEGMENT / UDP_GRO (net/udp_socket.hpp); off forces the one-datagram fallback.
    bool offloads = true;
  };

  UdpTransport(asio::io_context& io, Options options);
  ~UdpTransport() override;
  UdpTransport(const UdpTransport&) = delete;
  UdpTransport& operator=(const UdpTransport&) = delete;

  // Binds the port (a remembered one that is taken falls back to a random one) and reads until
  // stop(). Throws std::system_error when no port can be bound.
  void start(WireGuardReceiver& receiver);
  void stop();
  // `wg set listen-port`: rebinds; on failure the old socket stays and the error is returned.
  std::error_code set_port(std::uint16_t port);
  // `wg set fwmark` (SO_MARK on every datagram).
  // 0 removes it (knitd's underlay mark, base/socket_mark.hpp, stays on the socket).
  void set_mark(std::uint32_t mark);
  std::uint32_t mark() const { return mark_; }
  std::uint16_t port() const { return socket_.port(); }
  bool dual_stack() const { return socket_.dual_stack(); }
  bool offloads() const { return options_.offloads; }
  // DF on every datagram, never fragmented by this host (net::set_pmtu_probe): while the mesh's
  // path MTU discovery fits the tunnel to each path. Off (the kernel's default) in plain `wg`
  // mode, where what an ICMP taught the kernel is all a hand-configured pair has.
  std::error_code set_pmtu_probe(bool probe) { return socket_.set_pmtu_probe(probe); }
  // ICMP "fragmentation needed" / "packet too big" about the socket's datagrams (IP_RECVERR,
  // net/socket_error.hpp): the mesh's path MTU hints while a mesh runs (MeshTransport puts back
  // the handler it found when it stops); in plain `wg` mode knitd's own (DataPlane::on_path_too_big,
  // for the MSS clamp). Empty: counted in summary() only.
  void set_too_big_handler(net::UdpSocket::TooBigHandler handler) { socket_.set_too_big_handler(std::move(handler)); }
  const net::UdpSocket::TooBigHandler& too_big_handler() const { return socket_.too_big_handler(); }
  // ICMP time exceeded about what this socket sent (net::UdpSocket::set_time_exceeded_handler).
  void set_time_exceeded_handler(net::UdpSocket::TimeExceededHandler handler) {
    socket_.set_time_exceeded_handler(std::move(handler));
  }

  // Where disco and STUN go; nullptr drops them (no mesh).
  void set_other_datagrams(OtherDatagrams* handler) { other_ = handler; }
  // Queues a datagram to any endpoint (the mesh's direct paths, disco, STUN).
  void send_to(const Endpoint& to, ByteSpan datagram) { socket_.queue(to, datagram); }
  // Sends one datagram now with this IP TTL / hop limit (the mesh's short-TTL openers,
  // punch/path/manager.hpp); everything else keeps the system default.
  void send_with_ttl(const Endpoint& to, ByteSpan datagram, std::uint8_t ttl);
  // Sends one datagram now without DF (to an IPv4 address; net::UdpSocket::send_alone), for a
  // datagram larger than its path is known to carry that must still arrive in fragments.
  void send_fragmentable(const Endpoint& to, ByteSpan datagram) { socket_.send_alone(to, datagram, {0, true}); }
  std::uint64_t fragmentable_sends() const { return socket_.fragmentable_sends(); }

  // wg::Transport: a peer's datagrams go to its endpoint.
  void send(const wg::Peer& peer, std::span<const ByteSpan> datagrams) override;
  void send_reply(const Endpoint& to, ByteSpan datagram) override { socket_.queue(to, datagram); }
  void flush() override { socket_.flush(); }

  std::uint64_t other_dropped() const { return other_dropped_; }
  // One line of the socket's counters, for the shutdown log.
  std::string summary() const;

 private:
  std::error_code bind(std::uint16_t port);
  void arm();
  void on_readable();

  Options options_;
  net::UdpSocket socket_;
  WireGuardReceiver* receiver_ = nullptr;
  OtherDatagrams* other_ = nullptr;
  std::vector<ReceivedDatagram> batch_;
  std::uint32_t mark_ = 0;
  void apply_mark(bool changed = false);
  std::uint64_t other_dropped_ = 0;
  bool running_ = false;
};

}  // namespace knit::agent
