#include "punch/portmap/natpmp_client.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "base/socket_mark.hpp"

namespace knit::punch {

using namespace portmap;

namespace {

std::uint32_t seconds(Duration d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  return s <= 0 ? 0u : s > 0xffffffffLL ? 0xffffffffu : static_cast<std::uint32_t>(s);
}

}  // namespace

NatPmpClient::NatPmpClient(asio::io_context& io, PortMapClientOptions options,
                           PortMapCounters& counters)
    : io_(io),
      options_(options),
      counters_(counters),
      descriptor_(io),
      retry_timer_(io),
      deadline_timer_(io) {}

NatPmpClient::~NatPmpClient() {
  alive_.reset();
  close();
}

PortMapFailure NatPmpClient::fail(PortMapErrc error, std::string detail) const {
  return PortMapFailure{PortMapProtocol::natpmp, error, std::move(detail)};
}

std::optional<PortMapFailure> NatPmpClient::ensure_open() {
  if (open_) return std::nullopt;
  if (!options_.gateway.is_v4() || options_.gateway.is_unspecified())
    return fail(PortMapErrc::no_gateway, "no IPv4 gateway address");
  // forcegw = 1: our gateway, not libnatpmp's own guess; the address in network order.
  const int r = initnatpmp(&natpmp_, 1, htonl(options_.gateway.v4_host_order()));
  if (r < 0) {
    return fail(PortMapErrc::socket_error, "initnatpmp " + std::to_string(r) + ": " +
                                               std::strerror(errno));
  }
  mark_underlay_socket(natpmp_.s);  // the gateway is on the underlay (the kernel re-routes it)
  std::error_code ec;
  descriptor_.assign(natpmp_.s, ec);
  if (ec) {
    closenatpmp(&natpmp_);
    return fail(PortMapErrc::socket_error, "watch libnatpmp socket: " + ec.message());
  }
  open_ = true;
  return std::nullopt;
}

void NatPmpClient::close() {
  if (!open_) return;
  std::error_code ec;
  descriptor_.cancel(ec);
  descriptor_.release();  // libnatpmp owns the descriptor and closes it
  closenatpmp(&natpmp_);
  open_ = false;
  waiting_ = false;
}

// The start both exchanges share: state reset, then one deadline for the address request and
// (for a mapping) the map request after it.
void NatPmpClient::begin(bool probe_only, Done done) {
  probe_only_ = probe_only;
  done_ = std::move(done);
  busy_ = true;
  dropped_ = 0;
  tries_ = 0;
  const std::uint64_t gen = ++generation_;
  deadline_timer_.expires_after(options_.request_timeout);
  deadline_timer_.async_wait([this, gen, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
    if (ec || !alive.lock() || gen != generation_ || !busy_) return;
    finish({{}, fail(PortMapErrc::timeout, std::to_string(tries_) + " requests sent, " +
                                               std::to_string(dropped_) + " answers dropped"),
            false});
  });
}

void NatPmpClient::map(std::uint16_t internal_port, Duration lifetime, Done done) {
  cancel();
  if (auto f = ensure_open()) return done(PortMapOutcome{{}, std::move(f), false});
  if (internal_port != internal_port_) mapping_.reset();
  internal_port_ = internal_port;
  lifetime_s_ = std::max<std::uint32_t>(seconds(lifetime), 1);
  begin(false, std::move(done));
  send_step(Step::address);
}

void NatPmpClient::probe(Done done) {
  cancel();
  if (auto f = ensure_open()) return done(PortMapOutcome{{}, std::move(f), false});
  begin(true, std::move(done));
  send_step(Step::address);
}

void NatPmpClient::unmap(std::function<void()> done) {
  cancel();
  if (!mapping_ || !open_) return done();
  mapping_.reset();
  done_ = [done = std::move(done)](PortMapOutcome) { done(); };
  busy_ = true;
  tries_ = 0;
  const std::uint64_t gen = ++generation_;
  deadline_timer_.expires_after(options_.unmap_timeout);
  deadline_timer_.async_wait([this, gen, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
    if (ec || !alive.lock() || gen != generation_ || !busy_) return;
    finish({{}, fail(PortMapErrc::timeout, "delete not acknowledged"), false});
  });
  send_step(Step::unmap);
}

void NatPmpClient::cancel() {
  ++generation_;
  busy_ = false;
  done_ = nullptr;
  retry_timer_.cancel();
  deadline_timer_.cancel();
  if (open_) natpmp_.has_pending_request = 0;
}

void NatPmpClient::send_step(Step step) {
  step_ = step;
  int r = 0;
  switch (step) {
    case Step::address: r = sendpublicaddressrequest(&natpmp_); break;
    case Step::map: {
      // Renewals ask for the port we hold; a first request hints our own port.
      const std::uint16_t suggested = mapping_ ? mapping_->external.port() : internal_port_;
      r = sendnewportmappingrequest(&natpmp_, NATPMP_PROTOCOL_UDP, internal_port_, suggested,
                                    lifetime_s_);
      break;
    }
    case Step::unmap:
      // RFC 6886 §3.4: lifetime 0 and suggested external port 0 delete the mapping.
      r = sendnewportmappingrequest(&natpmp_, NATPMP_PROTOCOL_UDP, internal_port_, 0, 0);
      break;
  }
  ++tries_;
  ++counters_.requests_sent;
  if (r < 0) {
    const int err = errno;
    if (err == ECONNREFUSED) {
      return finish({{}, fail(PortMapErrc::refused, "ICMP port unreachable from " +
                                                        options_.gateway.to_string() + ":5351"),
                     false});
    }
    log(LogLevel::debug, "portmap", "natpmp send failed: ", r, " ", std::strerror(err));
  }
  // Our own retransmission clock (RFC 6886 §3.1: 250 ms, doubling): every resend goes
  // through libnatpmp's send function again, so libnatpmp never reads the socket unchecked.
  const std::uint64_t gen = generation_;
  retry_timer_.expires_after(options_.first_retry * (1 << std::min(tries_ - 1, 10)));
  retry_timer_.async_wait([this, gen, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
    if (ec || !alive.lock() || gen != generation_ || !busy_) return;
    send_step(step_);
  });
  arm_wait();
}

void NatPmpClient::arm_wait() {
  if (waiting_ || !open_) return;
  waiting_ = true;
  descriptor_.async_wait(asio::posix::stream_descriptor::wait_read,
                         [this, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
                           if (!alive.lock()) return;
                           waiting_ = false;
                           if (ec || !busy_) return;
                           drain();
                         });
}

void NatPmpClient::drain() {
  std::uint8_t buf[kMaxMessage + 4];
  // Bounded: a flood is read at most 64 datagrams per wake-up.
  for (int i = 0; i < 64 && busy_; ++i) {
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    const ssize_t n = ::recvfrom(natpmp_.s, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT,
                                 reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      if (errno == ECONNREFUSED) {
        return finish({{}, fail(PortMapErrc::refused, "ICMP port unreachable from " +
                                                          options_.gateway.to_string() + ":5351"),
                       false});
      }
      return finish({{}, fail(PortMapErrc::socket_error, std::strerror(errno)), false});
    }
    const auto consume = [&] { (void)::recv(natpmp_.s, buf, sizeof buf, MSG_DONTWAIT); };
    if (from.sin_family != AF_INET || ntohl(from.sin_addr.s_addr) != options_.gateway.v4_host_order() ||
        ntohs(from.sin_port) != kServerPort) {
      consume();
      ++counters_.dropped_source;
      ++dropped_;
      continue;
    }
    NatPmpAnswer checked;
    const std::uint8_t opcode = step_ == Step::address ? kNatPmpOpAddress : kNatPmpOpMapUdp;
    const NatPmpError e =
        static_cast<std::size_t>(n) > kMaxMessage
            ? NatPmpError::bad_size
            : check_natpmp_answer(ByteSpan(buf, static_cast<std::size_t>(n)), opcode,
                                  internal_port_, checked);
    if (e != NatPmpError::ok || !natpmp_.has_pending_request) {
      consume();
      count_drop(e == NatPmpError::ok ? NatPmpError::wrong_opcode : e, counters_);
      ++dropped_;
      log(LogLevel::debug, "portmap", "natpmp answer dropped: ", to_string(e));
      continue;
    }
    natpmpresp_t response{};
    const int r = readnatpmpresponseorretry(&natpmp_, &response);
    if (r == NATPMP_TRYAGAIN) continue;  // cannot happen after a successful peek; be safe
    return on_answer(checked, response);
  }
  if (busy_) arm_wait();
}

void NatPmpClient::on_answer(const NatPmpAnswer& checked, const natpmpresp_t& response) {
  ++counters_.answers_accepted;
  const Instant now = Clock::now();
  const bool reset = epoch_.observe(now, checked.epoch_s);
  if (reset) ++counters_.epoch_resets;
  if (checked.result != NatPmpResult::success) {
    return finish({{}, natpmp_failure(checked.result), reset});
  }
  switch (step_) {
    case Step::address: {
      // libnatpmp's copy of the address (network order), which the check has already seen.
      external_address_ = IpAddress::v4(ntohl(response.pnu.publicaddress.addr.s_addr));
      if (external_address_.is_unspecified()) {
        return finish({{}, fail(PortMapErrc::bad_external, "external address 0.0.0.0"), reset});
      }
      if (probe_only_) {
        return finish(
            {PortMapping{PortMapProtocol::natpmp, Endpoint(external_address_, 0), 0, {}, now},
             {},
             reset});
      }
      retry_timer_.cancel();
      tries_ = 0;
      return send_step(Step::map);
    }
    case Step::map: {
      const auto lifetime = response.pnu.newportmapping.lifetime;
      const auto port = response.pnu.newportmapping.mappedpublicport;
      if (lifetime == 0 || port == 0) {
        return finish({{}, fail(PortMapErrc::server_error, "granted lifetime 0 or port 0"), reset});
      }
      mapping_ = PortMapping{PortMapProtocol::natpmp, Endpoint(external_address_, port),
                             internal_port_, std::chrono::seconds(lifetime), now};
      return finish({mapping_, {}, reset});
    }
    case Step::unmap:
      return finish({{}, {}, reset});
  }
}

void NatPmpClient::finish(PortMapOutcome outcome) {
  Done done = std::move(done_);
  cancel();
  if (done) done(std::move(outcome));
}

}  // namespace knit::punch
