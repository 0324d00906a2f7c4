#include "punch/portmap/pcp_client.hpp"

#include "base/log.hpp"
#include "base/socket_mark.hpp"

namespace knit::punch {

using namespace portmap;

namespace {

asio::ip::address to_asio(const IpAddress& a) {
  if (a.is_v4()) return asio::ip::address_v4(a.v4_host_order());
  asio::ip::address_v6::bytes_type b;
  std::copy(a.bytes(), a.bytes() + 16, b.begin());
  return asio::ip::address_v6(b);
}

IpAddress from_asio(const asio::ip::address& a) {
  if (a.is_v4()) return IpAddress::v4(a.to_v4().to_uint());
  const auto b = a.to_v6().to_bytes();
  return IpAddress::v6(b.data());
}

std::uint32_t seconds(Duration d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  return s <= 0 ? 0u : s > 0xffffffffLL ? 0xffffffffu : static_cast<std::uint32_t>(s);
}

}  // namespace

PcpClient::PcpClient(asio::io_context& io, PortMapClientOptions options, Random& random,
                     PortMapCounters& counters)
    : options_(options),
      random_(random),
      counters_(counters),
      socket_(io),
      retry_timer_(io),
      deadline_timer_(io) {}

PcpClient::~PcpClient() {
  alive_.reset();
  std::error_code ec;
  socket_.close(ec);
}

PortMapFailure PcpClient::fail(PortMapErrc error, std::string detail) const {
  return PortMapFailure{PortMapProtocol::pcp, error, std::move(detail)};
}

std::optional<PortMapFailure> PcpClient::ensure_socket() {
  if (socket_.is_open()) return std::nullopt;
  if (!options_.gateway.is_v4() || options_.gateway.is_unspecified())
    return fail(PortMapErrc::no_gateway, "no IPv4 gateway address");
  std::error_code ec;
  socket_.open(asio::ip::udp::v4(), ec);
  if (!ec) mark_underlay_socket(socket_.native_handle());  // the gateway is on the underlay
  if (!ec) socket_.connect({to_asio(options_.gateway), kServerPort}, ec);
  asio::ip::udp::endpoint local;
  if (!ec) local = socket_.local_endpoint(ec);
  if (ec) {
    std::error_code ignored;
    socket_.close(ignored);
    return fail(PortMapErrc::socket_error, "connect to " + options_.gateway.to_string() + ":5351: " +
                                               ec.message());
  }
  // The PCP client address must be the source the server sees (§8.1), else ADDRESS_MISMATCH.
  client_address_ = from_asio(local.address());
  return std::nullopt;
}

void PcpClient::map(std::uint16_t internal_port, Duration lifetime, Done done) {
  cancel();
  if (auto f = ensure_socket()) return done(PortMapOutcome{{}, std::move(f), false});
  if (!have_nonce_ || map_request_.internal_port != internal_port) {
    random_.fill(map_request_.nonce);
    have_nonce_ = true;
    mapping_.reset();
  }
  map_request_.protocol = kIpProtocolUdp;
  map_request_.internal_port = internal_port;
  // Ask for the port we have (renewal) or the same port as ours (a port-preserving hint).
  map_request_.suggested_port = mapping_ ? mapping_->external.port() : internal_port;
  map_request_.suggested_address = mapping_ ? mapping_->external.address() : IpAddress();
  map_request_.lifetime_s = std::max<std::uint32_t>(seconds(lifetime), 1);
  map_request_.client = client_address_;
  begin(Kind::map, build_pcp_map_request(map_request_), options_.request_timeout, std::move(done));
}

void PcpClient::probe(Done done) {
  cancel();
  if (auto f = ensure_socket()) return done(PortMapOutcome{{}, std::move(f), false});
  begin(Kind::announce, build_pcp_announce_request({client_address_}), options_.request_timeout,
        std::move(done));
}

void PcpClient::unmap(std::function<void()> done) {
  cancel();
  if (!mapping_ || !socket_.is_open()) return done();
  // §15: a MAP with lifetime 0, same nonce, protocol and internal port deletes the mapping.
  map_request_.lifetime_s = 0;
  mapping_.reset();
  begin(Kind::unmap, build_pcp_map_request(map_request_), options_.unmap_timeout,
        [done = std::move(done)](PortMapOutcome) { done(); });
}

void PcpClient::cancel() {
  ++generation_;
  busy_ = false;
  done_ = nullptr;
  retry_timer_.cancel();
  deadline_timer_.cancel();
  // The pending receive stays armed only for the generation it belongs to; close-and-reopen is
  // not needed: a stale completion sees a newer generation and stops.
}

void PcpClient::begin(Kind kind, Bytes request, Duration timeout, Done done) {
  ++generation_;
  busy_ = true;
  kind_ = kind;
  request_ = std::move(request);
  done_ = std::move(done);
  sent_ = 0;
  dropped_ = 0;
  next_retry_ = options_.first_retry;
  const std::uint64_t gen = generation_;
  deadline_timer_.expires_after(timeout);
  deadline_timer_.async_wait([this, gen, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
    if (ec || !alive.lock() || gen != generation_ || !busy_) return;
    finish({{}, fail(PortMapErrc::timeout, std::to_string(sent_) + " requests sent, " +
                                               std::to_string(dropped_) + " answers dropped"),
            false});
  });
  send_request();
  arm_receive();
}

void PcpClient::send_request() {
  std::error_code ec;
  socket_.send(asio::buffer(request_), 0, ec);
  ++sent_;
  ++counters_.requests_sent;
  if (ec == asio::error::connection_refused) {
    return finish({{}, fail(PortMapErrc::refused, "ICMP port unreachable from " +
                                                      options_.gateway.to_string() + ":5351"),
                   false});
  }
  if (ec) log(LogLevel::debug, "portmap", "pcp send: ", ec.message());
  arm_retry(next_retry_);
  next_retry_ *= 2;
}

void PcpClient::arm_retry(Duration after) {
  const std::uint64_t gen = generation_;
  retry_timer_.expires_after(after);
  retry_timer_.async_wait([this, gen, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
    if (ec || !alive.lock() || gen != generation_ || !busy_) return;
    send_request();
  });
}

void PcpClient::arm_receive() {
  if (receiving_) return;
  receiving_ = true;
  socket_.async_receive_from(
      asio::buffer(buffer_), sender_,
      [this, alive = std::weak_ptr<int>(alive_)](std::error_code ec, std::size_t n) {
        if (!alive.lock()) return;
        receiving_ = false;
        if (ec == asio::error::operation_aborted) return;
        // Nothing in flight: a late answer to an exchange already finished; not re-armed, so
        // the next exchange starts with a fresh receive (and judges what is queued).
        if (!busy_) return;
        if (ec == asio::error::connection_refused) {
          return finish({{}, fail(PortMapErrc::refused, "ICMP port unreachable from " +
                                                            options_.gateway.to_string() + ":5351"),
                         false});
        }
        if (ec) return finish({{}, fail(PortMapErrc::socket_error, ec.message()), false});
        on_datagram(n);
        if (busy_) arm_receive();
      });
}

void PcpClient::on_datagram(std::size_t size) {
  const ByteSpan datagram(buffer_.data(), size);
  if (size > kMaxMessage) {  // the buffer holds one byte more than any legal message
    ++counters_.dropped_size;
    ++dropped_;
    return;
  }
  if (from_asio(sender_.address()) != options_.gateway || sender_.port() != kServerPort) {
    ++counters_.dropped_source;
    ++dropped_;
    return;
  }
  PcpAnswer answer;
  const PcpError e = kind_ == Kind::announce ? parse_pcp_announce_answer(datagram, answer)
                                             : parse_pcp_answer(datagram, map_request_, answer);
  if (e == PcpError::natpmp_only) {
    ++counters_.answers_accepted;
    return finish({{}, fail(PortMapErrc::unsupported, "the gateway speaks NAT-PMP only"), false});
  }
  if (e != PcpError::ok) {
    count_drop(e, counters_);
    ++dropped_;
    log(LogLevel::debug, "portmap", "pcp answer dropped: ", to_string(e));
    return;
  }
  ++counters_.answers_accepted;
  const Instant now = Clock::now();
  PortMapOutcome outcome;
  outcome.epoch_reset = epoch_.observe(now, answer.epoch_s);
  if (outcome.epoch_reset) ++counters_.epoch_resets;
  if (answer.result != PcpResult::success) {
    outcome.failure = pcp_failure(answer.result);
    return finish(std::move(outcome));
  }
  switch (kind_) {
    case Kind::announce:
      outcome.mapping = PortMapping{PortMapProtocol::pcp, Endpoint(), 0, Duration{}, now};
      break;
    case Kind::unmap:
      break;
    case Kind::map:
      if (answer.lifetime_s == 0) {
        outcome.failure = fail(PortMapErrc::server_error, "granted lifetime 0");
      } else if (answer.external.address().is_unspecified() || answer.external.port() == 0) {
        outcome.failure = fail(PortMapErrc::bad_external, "assigned " + answer.external.to_string());
      } else {
        mapping_ = PortMapping{PortMapProtocol::pcp, answer.external, map_request_.internal_port,
                               std::chrono::seconds(answer.lifetime_s), now};
        outcome.mapping = mapping_;
      }
      break;
  }
  finish(std::move(outcome));
}

void PcpClient::finish(PortMapOutcome outcome) {
  Done done = std::move(done_);
  cancel();
  if (done) done(std::move(outcome));
}

}  // namespace knit::punch
