#include "nat/held_syns.hpp"

#include <algorithm>
#include <cstring>

namespace knit::nat {

HeldSyns::Hold HeldSyns::hold(Instant until, const HeldSynKey& key, ByteSpan quote) {
  for (const Entry& e : held_)
    if (e.icmp.key == key) return Hold::already_held;  // a retransmission: the first one counts
  if (held_.size() >= capacity_) return Hold::full;
  Entry e;
  e.until = until;
  e.icmp.key = key;
  const std::size_t n = std::min(quote.size(), e.icmp.quote.size());
  std::memcpy(e.icmp.quote.data(), quote.data(), n);
  e.icmp.quote_size = static_cast<std::uint8_t>(n);
  held_.push_back(e);
  if (!earliest_ || until < *earliest_) earliest_ = until;
  return Hold::held;
}

bool HeldSyns::release(const HeldSynKey& key) {
  for (std::size_t i = 0; i < held_.size(); ++i) {
    if (held_[i].icmp.key == key) {
      held_[i] = held_.back();
      held_.pop_back();
      return true;
    }
  }
  return false;
}

std::size_t HeldSyns::expire(Instant now, bool owe_icmp) {
  std::size_t ended = 0;
  for (std::size_t i = 0; i < held_.size();) {
    if (held_[i].until > now) {
      ++i;
      continue;
    }
    // Owed errors are bounded like the holds: the oldest unsent one gives way.
    if (owe_icmp) {
      if (owed_.size() >= capacity_) owed_.erase(owed_.begin());
      owed_.push_back(held_[i].icmp);
    }
    held_[i] = held_.back();
    held_.pop_back();
    ++ended;
  }
  earliest_.reset();
  for (const Entry& e : held_)
    if (!earliest_ || e.until < *earliest_) earliest_ = e.until;
  return ended;
}

std::optional<OwedIcmp> HeldSyns::take_owed() {
  if (owed_.empty()) return std::nullopt;
  OwedIcmp icmp = owed_.front();
  owed_.erase(owed_.begin());
  return icmp;
}

}  // namespace knit::nat
