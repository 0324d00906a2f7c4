#include "agent/dns_service.hpp"

#include <algorithm>

#include "base/log.hpp"
#include "base/socket_mark.hpp"
#include "dns/ip_packet.hpp"

namespace knit::agent {
namespace {

asio::ip::udp::endpoint to_asio(const Endpoint& e) {
  if (e.address().is_v4()) {
    asio::ip::address_v4::bytes_type b;
    std::copy_n(e.address().bytes(), 4, b.begin());
    return {asio::ip::address_v4(b), e.port()};
  }
  asio::ip::address_v6::bytes_type b;
  std::copy_n(e.address().bytes(), 16, b.begin());
  return {asio::ip::address_v6(b), e.port()};
}

Endpoint from_asio(const asio::ip::udp::endpoint& e) {
  const auto a = e.address();
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return Endpoint(IpAddress::v4(b.data()), e.port());
  }
  if (a.to_v6().is_v4_mapped()) {
    const auto b = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_bytes();
    return Endpoint(IpAddress::v4(b.data()), e.port());
  }
  const auto b = a.to_v6().to_bytes();
  return Endpoint(IpAddress::v6(b.data()), e.port());
}

}  // namespace

// One upstream query over TCP (RFC 7766): connect, write the length-prefixed query, read the
// length-prefixed answer, hand it to the core; closed after the answer or the timeout.
struct DnsService::TcpQuery {
  explicit TcpQuery(asio::io_context& io) : socket(io), timer(io) {}
  asio::ip::tcp::socket socket;
  asio::steady_timer timer;
  std::uint64_t id = 0;
  Bytes out;
  std::array<std::uint8_t, 2> length{};
  Bytes in;
};

DnsService::DnsService(asio::io_context& io, TunWriter write_tun)
    : io_(io), write_tun_(std::move(write_tun)), resolver_(rng_), socket_v4_(io), socket_v6_(io), timer_(io) {}

DnsService::~DnsService() { stop(); }

void DnsService::stop() {
  std::error_code ignored;
  socket_v4_.close(ignored);
  socket_v6_.close(ignored);
  timer_.cancel();
  for (auto& [id, q] : tcp_) {
    q->socket.close(ignored);
    q->timer.cancel();
  }
  tcp_.clear();
}

bool DnsService::on_tun_packet(ByteSpan packet) {
  bool ours = false;
  for (const IpAddress& a : listen_) ours = ours || dns::addressed_to(packet, a);
  if (!ours) return false;
  const auto ip = dns::parse_ip_packet(packet);
  const bool tcp = ip && ip->protocol == dns::kProtocolTcp && ip->payload.size() >= 4 &&
                   load_be16(ip->payload.data() + 2) == dns::kDnsPort;
  std::optional<dns::UdpPacket> udp;
  if (!tcp) udp = dns::parse_udp_packet(packet);
  if (!tcp && (!udp || udp->destination.port() != dns::kDnsPort)) {
    ++dropped_other_;  // ICMP, another port, a broken packet: taken and dropped
    return true;
  }
  const IpAddress& source = tcp ? ip->source : udp->source.address();
  if (std::find(clients_.begin(), clients_.end(), source) == clients_.end()) {
    ++refused_source_;
    return true;
  }
  if (tcp) {
    dns::TcpServer::Actions out;
    tcp_server_.on_segment(Clock::now(), packet, rng_, out);
    run_tcp(out);
    return true;
  }
  Endpoint client = udp->source;
  client.set_local(udp->destination.address());
  actions_.clear();
  resolver_.on_query(Clock::now(), client, udp->payload, actions_);
  run(actions_);
  return true;
}

void DnsService::run_tcp(dns::TcpServer::Actions& out) {
  for (const Bytes& packet : out.packets) write_tun_(packet);
  for (const dns::TcpServer::Query& query : out.queries) {
    actions_.clear();
    resolver_.on_query(Clock::now(), query.client, query.wire, actions_, dns::Transport::tcp);
    run(actions_);
  }
  arm_timer();
}

void DnsService::run(dns::Actions& actions) {
  for (const dns::Reply& reply : actions.replies) {
    if (!reply.client.local()) continue;
    if (reply.transport == dns::Transport::tcp) {
      dns::TcpServer::Actions out;
      tcp_server_.on_answer(Clock::now(), reply.client, reply.wire, out);
      for (const Bytes& packet : out.packets) write_tun_(packet);
      continue;
    }
    const Endpoint from(*reply.client.local(), dns::kDnsPort);
    Endpoint to(reply.client.address(), reply.client.port());
    const Bytes packet = dns::build_udp_packet(from, to, reply.wire);
    write_tun_(packet);
  }
  for (const dns::UpstreamQuery& query : actions.queries) {
    if (query.transport == dns::Transport::udp) send_udp(query);
    else send_tcp(query);
  }
  arm_timer();
}

asio::ip::udp::socket& DnsService::socket_for(const IpAddress& address) {
  asio::ip::udp::socket& socket = address.is_v4() ? socket_v4_ : socket_v6_;
  if (!socket.is_open()) {
    std::error_code ec;
    socket.open(address.is_v4() ? asio::ip::udp::v4() : asio::ip::udp::v6(), ec);
    if (ec) {
      log(LogLevel::warn, "knitd", "dns: cannot open an upstream socket: ", ec.message());
      return socket;
    }
    // The host's resolvers are reached as the host reaches them, also under an exit node.
    mark_underlay_socket(socket.native_handle());
    receive(socket);
  }
  return socket;
}

void DnsService::receive(asio::ip::udp::socket& socket) {
  socket.async_receive_from(asio::buffer(receive_buffer_), receive_from_,
                            [this, &socket, alive = std::weak_ptr<char>(alive_)](std::error_code ec, std::size_t n) {
                              if (alive.expired() || ec == asio::error::operation_aborted || !socket.is_open()) return;
                              if (!ec) {
                                actions_.clear();
                                resolver_.on_upstream_udp(Clock::now(), from_asio(receive_from_),
                                                          ByteSpan(receive_buffer_.data(), n), actions_);
                                run(actions_);
                              }
                              receive(socket);
                            });
}

void DnsService::send_udp(const dns::UpstreamQuery& query) {
  asio::ip::udp::socket& socket = socket_for(query.upstream.address());
  if (!socket.is_open()) return;  // the core times it out
  std::error_code ec;
  socket.send_to(asio::buffer(query.wire), to_asio(query.upstream), 0, ec);
  if (ec) log(LogLevel::debug, "knitd", "dns: send to ", query.upstream.to_string(), ": ", ec.message());
}

void DnsService::send_tcp(const dns::UpstreamQuery& query) {
  auto q = std::make_shared<TcpQuery>(io_);
  q->out.resize(2 + query.wire.size());
  store_be16(q->out.data(), static_cast<std::uint16_t>(query.wire.size()));
  std::copy(query.wire.begin(), query.wire.end(), q->out.begin() + 2);
  const std::uint64_t id = query.tcp_id;
  q->id = id;
  tcp_[id] = q;
  auto fail = [this, id, alive = std::weak_ptr<char>(alive_)] {
    if (alive.expired()) return;
    auto it = tcp_.find(id);
    if (it == tcp_.end()) return;
    std::error_code ignored;
    it->second->socket.close(ignored);
    it->second->timer.cancel();
    tcp_.erase(it);
    actions_.clear();
    resolver_.on_upstream_tcp_failed(Clock::now(), id, actions_);
    run(actions_);
  };
  q->timer.expires_after(dns::kUpstreamTimeout);
  q->timer.async_wait([fail](std::error_code ec) {
    if (!ec) fail();
  });
  const auto u = to_asio(query.upstream);
  std::error_code opened;
  q->socket.open(u.address().is_v4() ? asio::ip::tcp::v4() : asio::ip::tcp::v6(), opened);
  if (!opened) mark_underlay_socket(q->socket.native_handle());
  q->socket.async_connect(asio::ip::tcp::endpoint(u.address(), u.port()), [this, q, fail](std::error_code connected) {
    if (connected) return connected == asio::error::operation_aborted ? void() : fail();
    asio::async_write(q->socket, asio::buffer(q->out), [this, q, fail](std::error_code written, std::size_t) {
      if (written) return written == asio::error::operation_aborted ? void() : fail();
      asio::async_read(q->socket, asio::buffer(q->length), [this, q, fail](std::error_code got_length, std::size_t) {
        if (got_length) return got_length == asio::error::operation_aborted ? void() : fail();
        q->in.resize(load_be16(q->length.data()));
        asio::async_read(q->socket, asio::buffer(q->in), [this, q, fail](std::error_code got, std::size_t) {
          if (got) return got == asio::error::operation_aborted ? void() : fail();
          on_tcp_answer(q);
        });
      });
    });
  });
}

void DnsService::on_tcp_answer(const std::shared_ptr<TcpQuery>& q) {
  std::error_code ignored;
  q->socket.close(ignored);
  q->timer.cancel();
  tcp_.erase(q->id);
  actions_.clear();
  resolver_.on_upstream_tcp(Clock::now(), q->id, q->in, actions_);
  run(actions_);
}

void DnsService::arm_timer() {
  auto next = resolver_.next_deadline();
  if (const auto tcp = tcp_server_.next_deadline(); tcp && (!next || *tcp < *next)) next = tcp;
  if (!next) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(*next);
  timer_.async_wait([this, alive = std::weak_ptr<char>(alive_)](std::error_code ec) {
    if (ec || alive.expired()) return;
    const Instant now = Clock::now();
    dns::TcpServer::Actions tcp;
    tcp_server_.on_timer(now, tcp);
    for (const Bytes& packet : tcp.packets) write_tun_(packet);
    actions_.clear();
    resolver_.on_timer(now, actions_);
    run(actions_);
  });
}

void DnsService::set_names(const std::string& domain, const std::vector<dns::MeshNode>& nodes,
                           std::optional<IpPrefix> v4, std::optional<IpPrefix> v6) {
  resolver_.table().set_domain(domain);
  resolver_.table().set_nodes(nodes);
  resolver_.table().set_prefixes(v4, v6);
}

void DnsService::update_names(const std::vector<dns::MeshNode>& gone, const std::vector<dns::MeshNode>& came) {
  resolver_.table().update_nodes(gone, came);
}

void DnsService::set_split(std::map<std::string, std::vector<Endpoint>> split) {
  if (split != resolver_.forwarder().split()) resolver_.forwarder().clear_cache();
  resolver_.forwarder().set_split(std::move(split));
}

void DnsService::set_upstreams(std::vector<Endpoint> upstreams) {
  if (upstreams != resolver_.forwarder().upstreams()) resolver_.forwarder().clear_cache();
  resolver_.forwarder().set_upstreams(std::move(upstreams));
}

}  // namespace knit::agent
