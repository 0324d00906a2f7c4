#include "punch/path/predict.hpp"

#include <algorithm>

namespace knit::punch {

namespace {
Duration interval_of(std::uint32_t rate) {
  return std::chrono::duration_cast<Duration>(std::chrono::seconds(1)) /
         std::max<std::uint32_t>(rate, 1);
}
}  // namespace

PortSpray::PortSpray(Random& rng, Instant start, std::uint32_t rate, std::size_t max_probes,
                     std::uint16_t port_min, std::uint16_t port_max)
    : rng_(&rng),
      next_at_(start),
      interval_(interval_of(rate)),
      port_min_(std::min(port_min, port_max)),
      range_(std::uint32_t{std::max(port_min, port_max)} - std::min(port_min, port_max) + 1) {
  // Never more probes than distinct ports.
  max_probes_ = std::min<std::size_t>(max_probes, range_);
}

std::uint16_t PortSpray::draw() {
  // Step i of a Fisher-Yates shuffle of [0, range): swap position i with a random j >= i.
  const auto at = [this](std::uint32_t pos) {
    auto it = swapped_.find(pos);
    return it == swapped_.end() ? pos : it->second;
  };
  const std::uint32_t i = static_cast<std::uint32_t>(sent_);
  const std::uint32_t j = i + rng_->uniform(range_ - i);
  const std::uint32_t value = at(j);
  swapped_[j] = at(i);
  swapped_.erase(i);  // position i is never read again
  return static_cast<std::uint16_t>(port_min_ + value);
}

std::optional<std::uint16_t> PortSpray::next(Instant now) {
  if (done() || now < next_at_) return std::nullopt;
  const std::uint16_t port = draw();
  ++sent_;
  probed_[port] = now;
  next_at_ = now + interval_;  // strict spacing: no catch-up after a late call
  return port;
}

std::optional<Instant> PortSpray::next_deadline() const {
  if (done()) return std::nullopt;
  return next_at_;
}

std::optional<Instant> PortSpray::probed_at(std::uint16_t port) const {
  auto it = probed_.find(port);
  if (it == probed_.end()) return std::nullopt;
  return it->second;
}

ProbeSocketRound::ProbeSocketRound(Instant start, std::size_t sockets, std::uint32_t rate)
    : next_at_(start), interval_(interval_of(rate)), sockets_(sockets) {}

std::optional<std::size_t> ProbeSocketRound::next(Instant now) {
  if (done() || now < next_at_) return std::nullopt;
  next_at_ = now + interval_;
  return sent_++;
}

std::optional<Instant> ProbeSocketRound::next_deadline() const {
  if (done()) return std::nullopt;
  return next_at_;
}

}  // namespace knit::punch
