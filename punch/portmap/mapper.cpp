#include "punch/portmap/mapper.hpp"

#include "base/log.hpp"
#include "punch/portmap/gateway.hpp"
#include "punch/portmap/natpmp_client.hpp"
#include "punch/portmap/pcp_client.hpp"
#include "punch/portmap/upnp_client.hpp"

namespace knit::punch {

std::string_view to_string(PortMapEvent::Kind kind) {
  switch (kind) {
    case PortMapEvent::Kind::mapped: return "mapped";
    case PortMapEvent::Kind::renewed: return "renewed";
    case PortMapEvent::Kind::failed: return "failed";
    case PortMapEvent::Kind::lost: return "lost";
  }
  return "unknown";
}

// One netcheck probe: its own clients (so it never disturbs the mapping in use).
struct PortMapper::ProbeRun {
  std::vector<std::unique_ptr<PortMapClient>> clients;
  PortMapAvailability result;
  std::size_t pending = 0;
  std::function<void(const PortMapAvailability&)> done;
};

PortMapper::PortMapper(asio::io_context& io, Random& random, PortMapperOptions options)
    : io_(io),
      random_(random),
      options_(std::move(options)),
      timer_(io),
      schedule_(options_.schedule) {}

PortMapper::~PortMapper() { alive_.reset(); }

std::optional<IpAddress> PortMapper::resolve_gateway() {
  if (options_.gateway) return options_.gateway;
  if (auto g = read_default_gateway(options_.route_file)) return g->address;
  return std::nullopt;
}

std::unique_ptr<PortMapClient> PortMapper::make_client(PortMapProtocol protocol,
                                                       const IpAddress& gateway) {
  PortMapClientOptions o = options_.client;
  o.gateway = gateway;
  switch (protocol) {
    case PortMapProtocol::pcp: return std::make_unique<PcpClient>(io_, o, random_, counters_);
    case PortMapProtocol::natpmp: return std::make_unique<NatPmpClient>(io_, o, counters_);
    case PortMapProtocol::upnp: return std::make_unique<UpnpClient>(io_, o, counters_);
  }
  return nullptr;
}

void PortMapper::start(std::uint16_t local_port, Handler handler) {
  for (auto& c : clients_) c->cancel();
  timer_.cancel();
  running_ = true;
  port_ = local_port;
  handler_ = std::move(handler);
  mapping_.reset();
  schedule_.clear();
  attempt_all();
}

void PortMapper::attempt_all() {
  retry_pending_ = false;
  renewing_ = false;
  failures_.clear();
  index_ = 0;
  const auto gateway = resolve_gateway();
  if (!gateway || !gateway->is_v4()) {
    gateway_.reset();
    clients_.clear();
    for (PortMapProtocol p : options_.protocols)
      failures_.push_back({p, PortMapErrc::no_gateway, "no IPv4 default route in " + options_.route_file});
    index_ = options_.protocols.size();
    return try_next();
  }
  if (gateway != gateway_ || clients_.size() != options_.protocols.size()) {
    gateway_ = gateway;
    clients_.clear();
    for (PortMapProtocol p : options_.protocols) clients_.push_back(make_client(p, *gateway));
  }
  try_next();
}

void PortMapper::try_next() {
  if (!running_) return;
  if (index_ >= clients_.size() || index_ >= options_.protocols.size()) {
    emit({PortMapEvent::Kind::failed, std::nullopt, failures_});
    retry_pending_ = true;
    arm_timer();
    return;
  }
  clients_[index_]->map(port_, options_.lifetime,
                        [this, alive = std::weak_ptr<int>(alive_)](PortMapOutcome outcome) {
                          if (!alive.lock()) return;
                          on_attempt(std::move(outcome));
                        });
}

void PortMapper::on_attempt(PortMapOutcome outcome) {
  if (!running_) return;
  if (!outcome.mapping) {
    PortMapFailure f = outcome.failure.value_or(
        PortMapFailure{options_.protocols[index_], PortMapErrc::server_error, "no mapping"});
    log(LogLevel::info, "portmap", f.to_string());
    failures_.push_back(std::move(f));
    ++index_;
    return try_next();
  }
  mapping_ = outcome.mapping;
  schedule_.granted(mapping_->obtained, mapping_->lifetime);
  log(LogLevel::info, "portmap", to_string(mapping_->protocol), " mapped UDP ", port_, " to ",
      mapping_->external.to_string(), " for ",
      std::chrono::duration_cast<std::chrono::seconds>(mapping_->lifetime).count(), " s");
  arm_timer();
  emit({PortMapEvent::Kind::mapped, mapping_, {}});
}

void PortMapper::on_renewal(PortMapOutcome outcome) {
  renewing_ = false;
  if (!running_) return;
  const Instant now = Clock::now();
  if (outcome.mapping) {
    ++counters_.renewals;
    const bool changed = !mapping_ || mapping_->external != outcome.mapping->external;
    mapping_ = outcome.mapping;
    failures_.clear();
    schedule_.granted(now, mapping_->lifetime);
    arm_timer();
    emit({changed ? PortMapEvent::Kind::mapped : PortMapEvent::Kind::renewed, mapping_, {}});
    return;
  }
  ++counters_.renewal_failures;
  if (outcome.failure) {
    log(LogLevel::info, "portmap", "renewal failed: ", outcome.failure->to_string());
    failures_.push_back(*outcome.failure);
    if (failures_.size() > 8) failures_.erase(failures_.begin());
  }
  schedule_.renewal_failed(now);
  arm_timer();
}

void PortMapper::arm_timer() {
  if (!running_) return;  // the handler may have called stop()
  std::optional<Instant> at;
  if (retry_pending_) at = Clock::now() + options_.retry_after_failure;
  else at = schedule_.next_deadline();
  if (!at) return;
  timer_.expires_at(*at);
  timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](std::error_code ec) {
    if (ec || !alive.lock() || !running_) return;
    on_timer();
  });
}

void PortMapper::on_timer() {
  if (retry_pending_) return attempt_all();
  if (renewing_) return;
  switch (schedule_.poll(Clock::now())) {
    case RenewalSchedule::Action::none:
      return arm_timer();
    case RenewalSchedule::Action::renew:
      renewing_ = true;
      clients_[index_]->map(port_, options_.lifetime,
                            [this, alive = std::weak_ptr<int>(alive_)](PortMapOutcome outcome) {
                              if (!alive.lock()) return;
                              on_renewal(std::move(outcome));
                            });
      return;
    case RenewalSchedule::Action::expired: {
      ++counters_.mappings_lost;
      log(LogLevel::warn, "portmap", "mapping ", mapping_ ? mapping_->external.to_string() : "",
          " expired without renewal");
      PortMapEvent event{PortMapEvent::Kind::lost, mapping_, failures_};
      mapping_.reset();
      schedule_.clear();
      emit(std::move(event));
      if (running_) attempt_all();
      return;
    }
  }
}

void PortMapper::emit(PortMapEvent event) {
  if (handler_) handler_(event);
}

void PortMapper::stop(std::function<void()> done) {
  running_ = false;
  timer_.cancel();
  schedule_.clear();
  auto finish = [done = std::move(done)] {
    if (done) done();
  };
  PortMapClient* active = mapping_ && index_ < clients_.size() ? clients_[index_].get() : nullptr;
  for (auto& c : clients_)
    if (c.get() != active) c->cancel();
  mapping_.reset();
  if (!active) {
    asio::post(io_, std::move(finish));
    return;
  }
  active->unmap([alive = std::weak_ptr<int>(alive_), finish = std::move(finish)] {
    if (alive.lock()) finish();
  });
}

void PortMapper::probe(std::function<void(const PortMapAvailability&)> done) {
  auto run = std::make_unique<ProbeRun>();
  ProbeRun* r = run.get();
  r->done = std::move(done);
  r->result.gateway = resolve_gateway();
  if (!gateway_) gateway_ = r->result.gateway;
  const std::vector<PortMapProtocol> all = {PortMapProtocol::pcp, PortMapProtocol::natpmp,
                                            PortMapProtocol::upnp};
  if (!r->result.gateway || !r->result.gateway->is_v4()) {
    for (PortMapProtocol p : all) r->result.failures.push_back({p, PortMapErrc::no_gateway, ""});
    asio::post(io_, [result = r->result, done = std::move(r->done)] { done(result); });
    return;
  }
  for (PortMapProtocol p : all) r->clients.push_back(make_client(p, *r->result.gateway));
  r->pending = r->clients.size();
  probes_.push_back(std::move(run));
  for (auto& client : r->clients) {
    const PortMapProtocol p = client->protocol();
    client->probe([this, r, p, alive = std::weak_ptr<int>(alive_)](PortMapOutcome outcome) {
      if (!alive.lock()) return;
      if (outcome.mapping) {
        (p == PortMapProtocol::pcp ? r->result.pcp
         : p == PortMapProtocol::natpmp ? r->result.natpmp
                                        : r->result.upnp) = true;
        if (!r->result.external_address && !outcome.mapping->external.empty())
          r->result.external_address = outcome.mapping->external.address();
      } else if (outcome.failure) {
        r->result.failures.push_back(*outcome.failure);
      }
      if (--r->pending > 0) return;
      r->done(r->result);
      // Destroyed outside the client's own callback.
      asio::post(io_, [this, r, alive] {
        if (!alive.lock()) return;
        std::erase_if(probes_, [r](const auto& run_ptr) { return run_ptr.get() == r; });
      });
    });
  }
}

}  // namespace knit::punch
