#include "punch/stun/client.hpp"

#include <algorithm>
#include <utility>

namespace knit::punch {

using namespace stun;

Duration StunRetransmit::total() const {
  Duration t{};
  Duration wait = rto;
  for (unsigned i = 1; i < max_sends; ++i, wait *= 2) t += wait;
  return t + rto * last_wait_rtos;
}

std::string_view to_string(StunOutcome outcome) {
  switch (outcome) {
    case StunOutcome::success: return "success";
    case StunOutcome::error_response: return "error response";
    case StunOutcome::timeout: return "timeout";
  }
  return "?";
}

StunClient::StunClient(Random& random, StunClientOptions options)
    : random_(random), options_(std::move(options)) {}

std::optional<StunTransactionId> StunClient::begin(Instant now, const Endpoint& server,
                                                   std::optional<std::uint8_t> change_flags) {
  return begin(now, server, change_flags, options_.retransmit);
}

std::optional<StunTransactionId> StunClient::begin(Instant now, const Endpoint& server,
                                                   std::optional<std::uint8_t> change_flags,
                                                   const StunRetransmit& retransmit) {
  if (transactions_.size() >= options_.max_pending) {
    ++counters_.refused;
    return std::nullopt;
  }
  Transaction t;
  random_.fill(t.id);
  t.server = Endpoint(server.address(), server.port());
  t.request = build_binding_request(
      t.id, {.change_flags = change_flags, .software = options_.software, .fingerprint = options_.fingerprint});
  t.retransmit = retransmit;
  t.retransmit.max_sends = std::max(1u, t.retransmit.max_sends);
  t.wait = t.retransmit.rto;
  t.first_sent = now;
  ++counters_.requests;
  send(now, t);
  transactions_.push_back(std::move(t));
  return transactions_.back().id;
}

void StunClient::send(Instant now, Transaction& t) {
  outgoing_.push_back({t.server, t.request});
  ++counters_.sent;
  if (t.sends > 0) ++counters_.retransmits;
  ++t.sends;
  t.last_sent = now;
  if (t.sends >= t.retransmit.max_sends) {
    t.deadline = now + t.retransmit.rto * t.retransmit.last_wait_rtos;
  } else {
    t.deadline = now + t.wait;
    t.wait *= 2;
  }
}

void StunClient::cancel(const StunTransactionId& id) {
  std::erase_if(transactions_, [&](const Transaction& t) { return t.id == id; });
}

void StunClient::cancel_all() { transactions_.clear(); }

bool StunClient::handle(Instant now, const Endpoint& from, ByteSpan datagram) {
  if (!looks_like_stun(datagram)) return false;
  StunMessage m;
  const StunError e = parse_stun(datagram, m);
  if (e == StunError::bad_fingerprint) {
    ++counters_.drop_bad_fingerprint;
    return true;
  }
  if (e != StunError::ok) {
    ++counters_.drop_malformed;
    return true;
  }
  const auto cls = m.message_class();
  if ((cls != MessageClass::success && cls != MessageClass::error) ||
      m.method() != method_of(kBindingRequest)) {
    ++counters_.drop_not_response;
    return true;
  }
  const StunTransactionId id = m.transaction_id();
  auto it = std::find_if(transactions_.begin(), transactions_.end(),
                         [&](const Transaction& t) { return t.id == id; });
  if (it == transactions_.end()) {
    ++counters_.drop_unknown_id;
    return true;
  }
  // RFC 8489 §6.3.3: unknown comprehension-required attributes in a success response fail
  // it; keep waiting (a genuine answer may still come) rather than trust it.
  if (cls == MessageClass::success && (!m.unknown_required.empty() || !m.reflexive())) {
    ++counters_.drop_unknown_required;
    return true;
  }
  StunResult r;
  r.id = id;
  r.server = it->server;
  r.outcome = cls == MessageClass::success ? StunOutcome::success : StunOutcome::error_response;
  r.responder = Endpoint(from.address(), from.port());
  r.rtt = now - it->last_sent;
  r.sends = it->sends;
  r.response = std::move(m);
  ++counters_.responses;
  if (r.outcome == StunOutcome::error_response) ++counters_.error_responses;
  transactions_.erase(it);
  results_.push_back(std::move(r));
  return true;
}

void StunClient::on_timers(Instant now) {
  for (auto it = transactions_.begin(); it != transactions_.end();) {
    if (now < it->deadline) {
      ++it;
      continue;
    }
    if (it->sends < it->retransmit.max_sends) {
      send(now, *it);
      ++it;
      continue;
    }
    StunResult r;
    r.id = it->id;
    r.server = it->server;
    r.outcome = StunOutcome::timeout;
    r.sends = it->sends;
    ++counters_.timeouts;
    results_.push_back(std::move(r));
    it = transactions_.erase(it);
  }
}

std::optional<Instant> StunClient::next_deadline() const {
  std::optional<Instant> next;
  for (const auto& t : transactions_)
    if (!next || t.deadline < *next) next = t.deadline;
  return next;
}

std::vector<StunDatagram> StunClient::take_outgoing() { return std::exchange(outgoing_, {}); }
std::vector<StunResult> StunClient::take_results() { return std::exchange(results_, {}); }

}  // namespace knit::punch
