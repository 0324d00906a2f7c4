#include "natbox/forwarder.hpp"

#include <algorithm>

#include "base/log.hpp"
#include "nat/wire.hpp"

namespace knit::natbox {
namespace {

constexpr const char* kLog = "natbox";
// Packets handled per readiness event before yielding, so a flood from one side cannot starve
// the other side or the timers.
constexpr int kPacketsPerWake = 64;
constexpr std::size_t kMaxPacket = 65535;
constexpr std::size_t kReplyRoom = 1500;
static_assert(kReplyRoom >= nat::kIcmpErrorMaxSize);

}  // namespace

Forwarder::Forwarder(asio::io_context& io, tun::TunDevice& from_inside,
                     tun::TunDevice& from_outside, nat::NatEngine& engine, Options options)
    : inside_(from_inside),
      outside_(from_outside),
      engine_(engine),
      options_(options),
      inside_stream_(io, from_inside.fd(0)),
      outside_stream_(io, from_outside.fd(0)),
      timer_(io, [this] { on_timer(); }),
      packet_(kMaxPacket),
      reply_(kReplyRoom) {}

Forwarder::~Forwarder() {
  stop();
  // The TUNs own their descriptors; Asio must not close them.
  inside_stream_.release();
  outside_stream_.release();
}

void Forwarder::start() {
  running_ = true;
  arm(Side::inside);
  arm(Side::outside);
  schedule_timer();
}

void Forwarder::stop() {
  if (!running_) return;
  running_ = false;
  std::error_code ignored;
  inside_stream_.cancel(ignored);
  outside_stream_.cancel(ignored);
  timer_.cancel();
}

void Forwarder::arm(Side side) {
  stream_of(side).async_wait(asio::posix::stream_descriptor::wait_read,
                             [this, side](std::error_code ec) {
                               if (ec == asio::error::operation_aborted || !running_) return;
                               if (ec) {
                                 log(LogLevel::error, kLog, "TUN wait failed: ", ec.message());
                                 return;
                               }
                               on_readable(side);
                             });
}

void Forwarder::on_readable(Side side) {
  const Instant now = Clock::now();
  tun::TunDevice& tun = tun_of(side);
  for (int i = 0; i < kPacketsPerWake; ++i) {
    const long n = tun.read(0, packet_);
    if (n == 0) break;
    if (n < 0) {
      ++counters_.read_errors;
      break;
    }
    handle(side, now, static_cast<std::size_t>(n));
  }
  schedule_timer();
  arm(side);
}

void Forwarder::handle(Side side, Instant now, std::size_t length) {
  const auto packet = std::span<std::uint8_t>(packet_).first(length);
  nat::Result result;
  if (side == Side::inside) {
    ++counters_.read_inside;
    result = engine_.outbound(now, packet, reply_);
  } else {
    ++counters_.read_outside;
    result = engine_.inbound(now, packet, reply_);
  }
  tun::TunDevice& tun = tun_of(side);
  switch (result.verdict) {
    case nat::Verdict::forward:
    case nat::Verdict::hairpin:
      write(tun, packet.first(std::min(result.length, length)));
      break;
    case nat::Verdict::reply:
      write(tun, std::span<const std::uint8_t>(reply_).first(std::min(result.reply_length, reply_.size())));
      break;
    case nat::Verdict::drop:
      // The engine rewrites nothing before deciding that a packet is none of its business.
      if (side == Side::outside && options_.unclaimed_to_router &&
          (result.reason == nat::DropReason::no_mapping ||
           result.reason == nat::DropReason::icmp_error_no_match)) {
        ++counters_.to_router;
        write(tun, packet);
        break;
      }
      if (log_level() <= LogLevel::debug)
        log(LogLevel::debug, kLog, side == Side::inside ? "outbound" : "inbound",
            " packet dropped: ", nat::to_string(result.reason));
      break;
  }
}

void Forwarder::write(tun::TunDevice& tun, std::span<const std::uint8_t> packet) {
  if (tun.write(0, packet)) {
    ++counters_.written;
  } else {
    ++counters_.write_errors;
  }
}

void Forwarder::schedule_timer() {
  if (running_) timer_.arm(engine_.next_deadline());
}

void Forwarder::on_timer() {
  if (!running_) return;  // an expiry already queued when stop() cancelled the timer
  engine_.expire(Clock::now());
  // ICMP port unreachables owed for unsolicited SYNs go back to their (outside) senders.
  for (std::size_t i = 0; i < engine_.config().max_held_syns; ++i) {
    const std::size_t n = engine_.take_timer_icmp(reply_);
    if (n == 0) break;
    ++counters_.timer_icmp;
    write(outside_, std::span<const std::uint8_t>(reply_).first(std::min(n, reply_.size())));
  }
  schedule_timer();
}

}  // namespace knit::natbox
