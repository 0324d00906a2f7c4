// The one timer of an event loop that drives a sans-I/O core: it sleeps until the earliest
// deadline the core reports (STYLE.md: "now in, deadline out"). arm() after each burst of work
// re-arms it only when the deadline moved; a deadline of nullopt cancels it. The expiry
// handler runs on the loop, once per expiry, never after cancel() or destruction.
// Deadlines are on the clock given (the steady clock, or a test's manual one): the timer sleeps
// for the time between that clock's now and the deadline.
#pragma once

#include <asio.hpp>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>

#include "base/time.hpp"

namespace knit::net {

class DeadlineTimer {
 public:
  DeadlineTimer(asio::io_context& io, std::function<void()> on_expiry, std::function<Instant()> clock = Clock::now)
      : timer_(io), on_expiry_(std::move(on_expiry)), clock_(std::move(clock)), alive_(std::make_shared<bool>(true)) {}
  ~DeadlineTimer() { *alive_ = false; }
  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  void arm(std::optional<Instant> deadline) {
    if (deadline == armed_) return;
    armed_ = deadline;
    if (!deadline) {
      timer_.cancel();
      return;
    }
    timer_.expires_after(std::max(Duration::zero(), *deadline - clock_()));
    timer_.async_wait([this, alive = alive_](std::error_code ec) {
      if (ec == asio::error::operation_aborted || !*alive) return;
      armed_.reset();
      on_expiry_();
    });
  }
  void cancel() { arm(std::nullopt); }
  std::optional<Instant> armed() const { return armed_; }

 private:
  asio::steady_timer timer_;
  std::function<void()> on_expiry_;
  std::function<Instant()> clock_;
  std::optional<Instant> armed_;
  std::shared_ptr<bool> alive_;  // the handler may outlive a cancel that raced its completion
};

}  // namespace knit::net
