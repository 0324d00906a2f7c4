// The seam under the WireGuard core (docs/ARCHITECTURE.md, "One seam under the device").
//
//   wg::Device ──send(peer, datagrams)──► Transport ──► the path it chooses:
//              ──send_reply(to, datagram)─►            plain `wg` mode: the peer's endpoint
//                                                     a mesh: direct socket, probe socket, relay
//   wg::Device ──write_tun(packet)──► TunSink ──► the agent's packet filter, then the TUN
//
// Everything the core sends leaves through one Transport, as wireguard-go's conn.Bind and
// Tailscale's magicsock have it: the core never knows which path a datagram takes, and nothing
// beneath the seam calls back into the core except by delivering received datagrams to the
// loop that owns it. Batches: send() takes the datagrams of one peer in the order they must
// leave; the loop calls flush() after each burst of work, so a transport may hold datagrams
// back and send them in as few system calls as it can.
#pragma once

#include <span>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::wg {

struct Peer;

class Transport {
 public:
  virtual ~Transport() = default;
  // Datagrams for a configured peer (handshakes, data, keepalives), in order. The peer has an
  // endpoint (the core sends nothing to a peer without one); the transport may take another path.
  virtual void send(const Peer& peer, std::span<const ByteSpan> datagrams) = 0;
  // A datagram answering a source that is no peer's (a cookie reply, whitepaper §5.4.7).
  virtual void send_reply(const Endpoint& to, ByteSpan datagram) = 0;
  // Sends whatever send() and send_reply() held back.
  virtual void flush() {}
};

class TunSink {
 public:
  virtual ~TunSink() = default;
  // A decrypted packet whose source the peer may use (cryptokey routing passed). The bytes are
  // the receive buffer's: the sink may rewrite them in place (the agent's NAT engine does).
  virtual void write_tun(MutableByteSpan packet) = 0;
};

}  // namespace knit::wg
