#include "punch/path/pmtu.hpp"

#include <algorithm>

namespace knit::punch {

std::size_t tunnel_mtu_for_path(std::size_t path_mtu, bool outer_v6, std::size_t tunnel_mtu) {
  const std::size_t overhead = outer_v6 ? kOuterOverheadV6 : kOuterOverheadV4;
  if (path_mtu <= overhead) return 0;
  const std::size_t inner = path_mtu - overhead;
  if (inner >= tunnel_mtu) return tunnel_mtu;
  return inner & ~std::size_t{15};  // the padding must not push a packet past the path
}

void PmtuSearch::start(Instant now, std::size_t base, std::size_t max) {
  (void)now;
  base_ = base;
  max_ = std::max(base, max);
  lo_ = base_;
  search(base_, max_, max_);  // optimistic: most paths carry the full size
}

void PmtuSearch::search(std::size_t lo, std::size_t hi, std::size_t first) {
  state_ = State::searching;
  lo_ = lo;
  hi_ = hi;
  probe_ = first;
  losses_ = 0;
  in_flight_.reset();
  if (probe_ <= lo_) probe_ = 0;  // nothing to learn: the caller's next poll completes
}

void PmtuSearch::next_size(Instant now) {
  losses_ = 0;
  in_flight_.reset();
  if (hi_ < lo_ + kGranularity) {
    state_ = State::complete;
    probe_ = 0;
    next_confirm_ = now + kConfirmInterval;
    next_raise_ = now + kRaiseInterval;
    return;
  }
  probe_ = (lo_ + hi_ + 1) / 2;
}

std::optional<std::size_t> PmtuSearch::poll(Instant now) {
  if (state_ == State::idle) return std::nullopt;
  if (in_flight_ && now - *in_flight_ >= kProbeTimeout) {
    in_flight_.reset();
    on_timeout(now);
  }
  if (in_flight_) return std::nullopt;
  if (state_ == State::searching) {
    if (probe_ == 0) next_size(now);
    if (state_ == State::searching) return probe_;
  }
  // Complete: a probe of max now and then (has the path grown?), of mtu() more often (has it
  // shrunk?).
  if (probe_ != 0) return probe_;  // a confirm or raise being retried
  if (lo_ < max_ && now >= next_raise_) {
    confirming_ = false;
    probe_ = max_;
    return probe_;
  }
  if (now >= next_confirm_) {
    confirming_ = true;
    probe_ = lo_;
    return probe_;
  }
  return std::nullopt;
}

void PmtuSearch::sent(Instant now, std::size_t size) {
  if (state_ != State::idle && size == probe_) in_flight_ = now;
}

void PmtuSearch::acked(Instant now, std::size_t size) {
  if (state_ == State::idle) return;
  if (size > lo_ && size <= max_) lo_ = size;
  if (state_ == State::searching) {
    if (probe_ != 0 && size >= probe_) next_size(now);
    return;
  }
  if (probe_ != 0 && size >= probe_) {
    probe_ = 0;
    losses_ = 0;
    in_flight_.reset();
    next_confirm_ = now + kConfirmInterval;
    if (!confirming_) next_raise_ = now + kRaiseInterval;
  }
}

void PmtuSearch::on_timeout(Instant now) {
  if (++losses_ < kMaxProbes) return;  // one lost probe proves nothing: the same size again
  losses_ = 0;
  if (state_ == State::searching) {
    hi_ = probe_ - 1;
    next_size(now);
    return;
  }
  const std::size_t failed = probe_;
  probe_ = 0;
  if (!confirming_) {
    next_raise_ = now + kRaiseInterval;  // the path did not grow
    return;
  }
  // Black hole: what got through no longer does. Back to the base, search below it.
  search(base_, failed - 1, failed - 1);
  probe_ = 0;
  next_size(now);
}

bool PmtuSearch::note_too_big(Instant now, std::size_t mtu) {
  if (state_ == State::idle) return false;
  mtu = std::max(mtu, base_);
  if (mtu >= max_) return false;
  if (state_ == State::searching) {
    if (mtu >= hi_) return false;
    hi_ = mtu;
    if (probe_ > hi_) search(lo_ > hi_ ? base_ : lo_, hi_, hi_);
    return true;
  }
  if (mtu < lo_) {
    search(base_, mtu, mtu);  // what got through no longer does: search below the hint
    return true;
  }
  if (probe_ > mtu && !confirming_) {
    // A raise probe (has the path grown?) above the hint: no, it has not; ask again later.
    probe_ = 0;
    losses_ = 0;
    in_flight_.reset();
    next_raise_ = now + kRaiseInterval;
    return true;
  }
  return false;
}

std::optional<Instant> PmtuSearch::next_deadline(Instant now) const {
  switch (state_) {
    case State::idle: return std::nullopt;
    case State::searching: return in_flight_ ? *in_flight_ + kProbeTimeout : now;
    case State::complete:
      if (in_flight_) return *in_flight_ + kProbeTimeout;
      if (probe_ != 0) return now;
      return lo_ < max_ ? std::min(next_confirm_, next_raise_) : next_confirm_;
  }
  return std::nullopt;
}

}  // namespace knit::punch
