// knitd's mesh resolver shell: moves bytes and time for the sans-I/O dns::Resolver.
//
//   host stub ──query to 100.100.100.100:53──► TUN ──DataPlane local hook──► on_tun_packet
//        ▲       (UDP, or TCP through dns::TcpServer)                            │ dns::Resolver
//        └──── IP/UDP answer ◄── DataPlane::write_local ◄── replies ◄───────────┤
//                                       upstream UDP socket / one TCP connection per retry ◄┘
//
// It listens on no socket: queries arrive as packets the agent reads from its TUN, addressed to
// the resolver addresses (100.100.100.100 and the mesh ULA's ::6464:6464 by default), which are
// routed into the TUN by the mesh prefixes. A packet from the underlay never reaches the TUN, so
// the resolver cannot be used as an open resolver; and only queries from this host's own mesh
// addresses are taken (a host that forwards IP would otherwise route an underlay packet for
// 100.100.100.100 into the TUN). Stubs that ask over TCP (after a truncated UDP answer, or
// `dig +tcp`) are served by dns::TcpServer, a small TCP in the core fed the same TUN packets.
// Only the upstream queries use sockets: the host's original resolvers (or a split domain's)
// over ordinary UDP, and TCP after truncation.
#pragma once

#include <asio.hpp>

#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "base/random.hpp"
#include "dns/resolver.hpp"
#include "dns/tcp_server.hpp"

namespace knit::agent {

class DnsService {
 public:
  using TunWriter = std::function<void(ByteSpan packet)>;

  DnsService(asio::io_context& io, TunWriter write_tun);
  ~DnsService();
  DnsService(const DnsService&) = delete;
  DnsService& operator=(const DnsService&) = delete;

  // The DataPlane's local hook: true when the packet was for a resolver address (taken).
  bool on_tun_packet(ByteSpan packet);

  // What the mesh knows. domain empty: answer nothing from the table (everything forwards).
  void set_names(const std::string& domain, const std::vector<dns::MeshNode>& nodes, std::optional<IpPrefix> v4,
                 std::optional<IpPrefix> v6);
  // A few nodes changed (dns::MeshTable::update_nodes): O(changed), not a rebuild.
  void update_names(const std::vector<dns::MeshNode>& gone, const std::vector<dns::MeshNode>& came);
  void set_split(std::map<std::string, std::vector<Endpoint>> split);
  void set_upstreams(std::vector<Endpoint> upstreams);
  // The addresses the resolver answers on (0 to 2: IPv4 and IPv6). None: it takes nothing.
  void set_listen(std::vector<IpAddress> addresses) { listen_ = std::move(addresses); }
  const std::vector<IpAddress>& listen() const { return listen_; }
  // The sources queries may come from (this node's mesh addresses); others are dropped.
  void set_clients(std::vector<IpAddress> clients) { clients_ = std::move(clients); }
  std::uint64_t refused_source() const { return refused_source_; }

  const dns::Resolver& resolver() const { return resolver_; }
  const dns::TcpServer& tcp_server() const { return tcp_server_; }
  std::uint64_t dropped_other() const { return dropped_other_; }  // to the address, not UDP/TCP 53
  void stop();

 private:
  struct TcpQuery;
  void run(dns::Actions& actions);
  void run_tcp(dns::TcpServer::Actions& out);
  void send_udp(const dns::UpstreamQuery& query);
  void send_tcp(const dns::UpstreamQuery& query);
  void on_tcp_answer(const std::shared_ptr<TcpQuery>& query);
  asio::ip::udp::socket& socket_for(const IpAddress& address);
  void receive(asio::ip::udp::socket& socket);
  void arm_timer();

  asio::io_context& io_;
  TunWriter write_tun_;
  SystemRandom rng_;
  dns::Resolver resolver_;
  dns::TcpServer tcp_server_;
  std::vector<IpAddress> listen_;
  std::vector<IpAddress> clients_;
  std::uint64_t refused_source_ = 0;
  asio::ip::udp::socket socket_v4_;
  asio::ip::udp::socket socket_v6_;
  std::array<std::uint8_t, 65536> receive_buffer_{};
  asio::ip::udp::endpoint receive_from_;
  asio::steady_timer timer_;
  std::map<std::uint64_t, std::shared_ptr<TcpQuery>> tcp_;
  std::shared_ptr<char> alive_ = std::make_shared<char>();
  std::uint64_t dropped_other_ = 0;
  dns::Actions actions_;
};

}  // namespace knit::agent
