// Simulated agents for the coordinator benchmark: many control-channel clients on one Asio loop
// and thread of their own, speaking to the coordinator over real TCP on loopback.
//
// Each agent has its own node key and Noise IK channel (control/channel.hpp), registers with a
// reusable token, and then does what knitd's coordinator session does with what it is sent:
// every message is decrypted and parsed in full by control::parse_message (every field
// validated, as an agent does), map pages are gathered in order, and every delta is applied:
//   to the agent's version and peer count on every agent (a page or delta out of order counts
//   as a gap), and to a real control::PeerTable on every full_every-th agent, whose final map
//   is checked against the coordinator's node list (ten thousand full tables of ten thousand
//   peers would not fit in memory: 10^8 entries).
// and pings when it sent nothing for 15 s, as knitd does, so the coordinator's idle timeout holds.
//
// One thread decrypts everything the coordinator sends to every agent, so the agents can fall
// behind the coordinator (N joins bring O(N^2) bytes). While the loop runs late no new join
// starts, so that handshakes and pings still go out in time; JoinReport says for how long.
//
// The bench thread drives the swarm through the methods below; they run their work on the
// swarm's loop and wait for it (bounded).
#pragma once

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/messages.hpp"
#include "wg/keys.hpp"

namespace knit::bench {

using SteadyClock = std::chrono::steady_clock;

struct SwarmConfig {
  std::uint16_t port = 0;  // on 127.0.0.1
  wg::PublicKey coordinator_key{};
  std::string token;                                      // reusable
  std::size_t in_flight = 64;                             // joins under way at once
  std::size_t full_every = 100;  // these agents keep a full PeerTable
  SteadyClock::duration join_timeout = std::chrono::seconds(30);  // connect to full map
  SteadyClock::duration ping_interval = std::chrono::seconds(15);
};

struct JoinReport {
  std::size_t joined = 0;     // hold their first full map
  std::size_t failed = 0;     // refused, closed or timed out before that
  std::size_t launched = 0;   // fewer than asked when the budget ran out
  SteadyClock::time_point started{};
  SteadyClock::duration elapsed{};  // start to the last join
  // How long no join started because the swarm's loop was behind (the agents, not the
  // coordinator, were the bottleneck then).
  SteadyClock::duration throttled{};
  bool budget_exhausted = false;
};

// Where the open agents' maps stand.
struct Consistency {
  std::size_t open = 0;
  std::uint64_t min_version = 0;
  std::uint64_t max_version = 0;
  std::size_t min_peers = 0;
  std::size_t max_peers = 0;
  SteadyClock::time_point last_update{};  // the newest map or delta any of them applied
};

// A change spreading to the agents, from the moment it was made.
struct Propagation {
  bool complete = false;  // every expected agent got there
  std::size_t reached = 0;
  std::size_t expected = 0;
  SteadyClock::duration first{};  // to the first agent
  SteadyClock::duration last{};   // to the last one
  SteadyClock::duration p99{};    // to 99% of them
};

struct SwarmTotals {
  std::uint64_t bytes = 0;  // read from sockets
  std::uint64_t maps = 0;         // whole maps
  std::uint64_t pages = 0;
  std::uint64_t map_bytes = 0;  // plaintext
  std::uint64_t deltas = 0;
  std::uint64_t delta_bytes = 0;
  std::uint64_t delta_peers = 0;    // entries in them
  std::uint64_t table_misfits = 0;  // deltas a full PeerTable refused
  std::uint64_t gaps = 0;        // deltas whose version did not follow
  std::uint64_t unexpected = 0;  // messages that did not parse or were not expected
  std::uint64_t pings = 0;
  std::uint64_t pongs = 0;
  std::uint64_t closed_by_server = 0;  // open agents whose connection ended
  std::uint64_t removed = 0;           // of them, told they were removed
};

class SimAgent;

class Swarm {
 public:
  explicit Swarm(SwarmConfig config);
  ~Swarm();  // closes every agent and joins the thread
  Swarm(const Swarm&) = delete;
  Swarm& operator=(const Swarm&) = delete;

  // Starts n more agents, config.in_flight at a time, and returns once each has its full map
  // or failed, or when the budget is spent (then no more start, and those under way are given
  // until their join timeout).
  JoinReport join(std::size_t n, SteadyClock::duration budget);

  Consistency consistency();
  SwarmTotals totals();
  // Open agents, by index; and an agent's node name.
  std::vector<std::size_t> open_agents();
  std::string name(std::size_t agent);

  // Watches for every open agent but `excluded` to hold `version` (agents already there count
  // at once); then wait() until they all do, or `within` passes.
  void arm(std::uint64_t version, std::optional<std::size_t> excluded = std::nullopt);
  Propagation wait(SteadyClock::time_point since, SteadyClock::duration within);

  // Full-table agents whose map is not exactly `all` but themselves.
  std::size_t verify_tables(const std::vector<control::NodeKey>& all);
  std::vector<control::NodeKey> open_keys();

  // Agent `agent` reports new endpoints; returns when it was sent.
  SteadyClock::time_point change_endpoints(std::size_t agent);

 private:
  friend class SimAgent;

  template <typename F>
  auto on_loop(F f);
  void launch();
  void arm_tick();
  void tick();
  void sweep(SteadyClock::time_point now);
  // From agents, on the loop.
  void on_joined(SimAgent& agent);
  void on_failed(SimAgent& agent);
  void on_updated(SimAgent& agent);
  void on_closed(SimAgent& agent);

  SwarmConfig config_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::steady_timer tick_timer_;
  SteadyClock::time_point tick_due_{};
  SteadyClock::time_point last_tick_{};
  bool behind_ = false;  // the loop runs late: start no join
  SystemRandom rng_;
  Bytes read_buffer_;  // shared: one thread reads every socket
  std::vector<std::unique_ptr<SimAgent>> agents_;
  SwarmTotals totals_;
  std::uint64_t ticks_ = 0;
  std::uint64_t endpoint_generation_ = 0;

  // The join under way (loop only, but for the atomics the bench thread polls).
  std::size_t join_until_ = 0;  // agents_ index to stop launching at
  std::size_t in_flight_ = 0;
  bool launching_ = false;
  SteadyClock::duration throttled_{};
  SteadyClock::time_point join_started_{};
  std::atomic<std::size_t> joined_{0};
  std::atomic<std::size_t> failed_{0};
  std::atomic<std::int64_t> last_join_ns_{0};  // steady clock

  // The change being watched.
  std::uint64_t target_version_ = 0;
  bool armed_ = false;
  std::atomic<std::size_t> expected_{0};
  std::atomic<std::size_t> reached_{0};
  std::atomic<std::int64_t> first_ns_{0};
  std::atomic<std::int64_t> last_ns_{0};
  std::vector<std::int64_t> arrivals_;  // loop only

  std::thread thread_;
};

}  // namespace knit::bench
