// Forwarder: the natbox's packet loop. Packets the kernel steers into the two TUNs (see
// takeover.hpp) go through the NAT engine and are written back into the TUN they came from, so
// the kernel routes the rewritten packet by its main table:
//
//   TUN_IN  read ──► engine.outbound ──► forward / hairpin: the packet ──► TUN_IN  write
//                                   └──► reply (ICMP error to the sender) ──► TUN_IN write
//   TUN_OUT read ──► engine.inbound  ──► forward: the packet ─────────────► TUN_OUT write
//                                   └──► reply ──────────────────────────► TUN_OUT write
//   timer at engine.next_deadline() ──► engine.expire(now) ──► owed ICMP 3/3 ──► TUN_OUT write
//
// The direction is known from the TUN, never guessed from addresses, so nothing arriving on
// the outside can pass for an inside host.
//
// When the public address is the router's own (Takeover's local mode), an inbound packet that
// belongs to no mapping at all (or an ICMP error quoting none) is meant for the router itself:
// it goes back unchanged into TUN_OUT, where the "lookup local" rule delivers it to the
// router's own stack, so the router keeps answering pings and its own connections work.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "base/time.hpp"
#include "nat/nat_engine.hpp"
#include "net/deadline_timer.hpp"
#include "tun/tun_device.hpp"

namespace knit::natbox {

class Forwarder {
 public:
  struct Counters {
    std::uint64_t read_inside = 0;   // packets read from TUN_IN
    std::uint64_t read_outside = 0;  // packets read from TUN_OUT
    std::uint64_t written = 0;
    std::uint64_t write_errors = 0;  // the kernel did not take a packet (counted, dropped)
    std::uint64_t read_errors = 0;
    std::uint64_t timer_icmp = 0;    // RFC 5382 REQ-4 port unreachables after a SYN hold
    std::uint64_t to_router = 0;     // unclaimed inbound packets handed to the router itself
  };
  struct Options {
    bool unclaimed_to_router = false;  // only where the public address is a local address
  };

  Forwarder(asio::io_context& io, tun::TunDevice& from_inside, tun::TunDevice& from_outside,
            nat::NatEngine& engine, Options options);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  void start();
  void stop();
  const Counters& counters() const { return counters_; }

 private:
  enum class Side { inside, outside };

  void arm(Side side);
  void on_readable(Side side);
  void handle(Side side, Instant now, std::size_t length);
  void write(tun::TunDevice& tun, std::span<const std::uint8_t> packet);
  void schedule_timer();
  void on_timer();

  tun::TunDevice& tun_of(Side side) { return side == Side::inside ? inside_ : outside_; }
  asio::posix::stream_descriptor& stream_of(Side side) {
    return side == Side::inside ? inside_stream_ : outside_stream_;
  }

  tun::TunDevice& inside_;
  tun::TunDevice& outside_;
  nat::NatEngine& engine_;
  Options options_;
  asio::posix::stream_descriptor inside_stream_;
  asio::posix::stream_descriptor outside_stream_;
  net::DeadlineTimer timer_;  // at engine.next_deadline()
  bool running_ = false;
  std::vector<std::uint8_t> packet_;
  std::vector<std::uint8_t> reply_;
  Counters counters_;
};

}  // namespace knit::natbox
