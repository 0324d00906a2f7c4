// coordinator_bench: how the coordinator copes with many agents. Not a test: it prints numbers.
//
//   coordinator_bench [--agents N ...] [--in-flight K] [--parse-every P] [--repeats R]
//                     [--budget SECONDS]
//
// For each N (default 1000, then 10000), on loopback only:
//
//   bench process                                       child process (this program, exec'd)
//   ┌────────────────────────────────────┐              ┌──────────────────────────────┐
//   │ Swarm: N simulated agents, one     │── N TCP ────►│ coordinator::Server (serve's │
//   │ thread, Noise IK, register, maps,  │  127.0.0.1   │ defaults) on its own loop,   │
//   │ deltas, pings                      │              │ temp state dir               │
//   │ admin Store handle (`nodes remove`)│── SQLite ───►│ polls the store every 250 ms │
//   └────────────────────────────────────┘              └──────────────────────────────┘
//
// and measures
//   1. joins: N agents with at most K handshakes in flight; an agent has joined when it holds
//      its first full peer map. Also when every agent's map had caught up with the last join,
//      and the CPU time each side spent.
//   2. propagation of one change to every agent, R times each, median: an agent's
//      EndpointUpdate (publish_delay 50 ms included) and an admin removing a node through its
//      own Store handle (the server's 250 ms store poll included); "fan-out" is first agent to
//      last agent: the server's sealing and writing plus the agents' thread reading them all.
//   3. the coordinator's memory: VmRSS of the child after the joins, less its VmRSS before any
//      agent came, per node; and the same after malloc_trim(0) in the child ("live"), since
//      glibc keeps the freed buffers of full maps and send queues. It counts the server's heap
//      (sessions, the published map, per-peer JSON, SQLite's cache), not kernel socket buffers.
//
// The agents run in this process, on one thread, so they compete with the coordinator for the
// CPU; N joins move O(N^2) bytes (each joiner gets a full map of everybody, everybody gets a
// delta per join), all of which the agents decrypt, and the deltas they parse (every P-th
// agent with control::parse_message; P = 1 by default). The swarm holds back new joins while
// its loop runs late, and says for how long. When the joins outlast the budget the run is
// capped at the agents that joined, and says so.
#include <CLI/CLI.hpp>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/log.hpp"
#include "base/random.hpp"
#include "bench/coordinator_bench_agents.hpp"
#include "bench/coordinator_bench_server.hpp"
#include "control/host_port.hpp"
#include "coordinator/key_file.hpp"
#include "coordinator/state_dir.hpp"
#include "coordinator/token_issue.hpp"

namespace knit::bench {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Descriptors besides the agents' sockets, per process.
constexpr std::size_t kSpareDescriptors = 128;
constexpr auto kSettleWait = 120s;
constexpr auto kChangeWait = 30s;
constexpr int kSettleRounds = 10;

struct Options {
  std::vector<std::size_t> agents{1000, 10000};
  std::size_t in_flight = 64;
  std::size_t parse_every = 1;
  std::size_t repeats = 5;
  double budget_seconds = 300;
};

struct Row {
  std::size_t asked = 0;
  std::size_t joined = 0;
  double join_s = 0;
  double consistent_s = 0;  // start to every agent holding the final map
  std::optional<double> endpoint_ms, endpoint_fanout_ms, remove_ms, remove_fanout_ms;
  std::size_t rss_before_kib = 0;
  std::size_t rss_kib = 0;
  std::size_t live_before_kib = 0;  // after malloc_trim
  std::size_t live_kib = 0;
  double server_cpu_s = 0;  // during the joins
  double agents_cpu_s = 0;
  bool capped = false;
};

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "knit-cbench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

template <typename T>
T take(coordinator::Result<T>&& result, const char* what) {
  if (!result) throw std::runtime_error(std::string(what) + ": " + result.error().message);
  return std::move(result).value();
}

double seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }
double millis(SteadyClock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

std::optional<double> median(std::vector<double> values) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// User and system time of this process (the agents' thread, mostly).
double own_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(usage.ru_utime) + s(usage.ru_stime);
}

// The soft limit, raised to the hard one.
rlim_t raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

// Waits until the coordinator has published everything and every open agent holds that
// version; returns it (nullopt if that did not happen within the rounds).
std::optional<std::uint64_t> settle(ServerProcess& server, Swarm& swarm) {
  for (int round = 0; round < kSettleRounds; ++round) {
    const std::uint64_t version = server.stats().map_version;
    swarm.arm(version);
    const Propagation p = swarm.wait(SteadyClock::now(), kSettleWait);
    // publish_delay is 50 ms: a change pending at the first look is out by now.
    std::this_thread::sleep_for(100ms);
    if (p.complete && server.stats().map_version == version) return version;
  }
  return std::nullopt;
}

void print_stats(const char* when, const ServerStats& s) {
  const coordinator::ServerCounters& c = s.counters;
  std::printf(
      "  coordinator %s: VmRSS %zu KiB (peak %zu), %zu sessions, %zu online, map version %llu;\n"
      "    accepted %llu, registered %llu, rejected %llu, handshake failures %llu, malformed "
      "%llu, queue overflows %llu, timeouts %llu, refused %llu\n",
      when, s.rss_kib, s.hwm_kib, s.sessions, s.online,
      static_cast<unsigned long long>(s.map_version),
      static_cast<unsigned long long>(c.accepted), static_cast<unsigned long long>(c.registered),
      static_cast<unsigned long long>(c.rejected),
      static_cast<unsigned long long>(c.handshake_failures),
      static_cast<unsigned long long>(c.malformed),
      static_cast<unsigned long long>(c.queue_overflows),
      static_cast<unsigned long long>(c.timeouts),
      static_cast<unsigned long long>(c.refused_connections));
}

// One change, repeats times: make() makes it (for agent `agent`, at the returned time).
template <typename Make>
void measure_change(const char* what, ServerProcess& server, Swarm& swarm, std::size_t repeats,
                    bool exclude_agent, Make make, std::optional<double>& total_ms,
                    std::optional<double>& fanout_ms) {
  std::vector<double> totals;
  std::vector<double> fanouts;
  for (std::size_t r = 0; r < repeats; ++r) {
    const auto version = settle(server, swarm);
    const std::vector<std::size_t> open = swarm.open_agents();
    if (!version || open.size() < 2) {
      std::printf("  %s: the agents did not settle; skipped\n", what);
      break;
    }
    const std::size_t agent = open[(r * 7919 + 13) % open.size()];
    swarm.arm(*version + 1, exclude_agent ? std::optional<std::size_t>(agent) : std::nullopt);
    const SteadyClock::time_point made = make(agent);
    const Propagation p = swarm.wait(made, kChangeWait);
    if (!p.complete) {
      std::printf("  %s #%zu: only %zu of %zu agents got it within %.0f s\n", what, r + 1,
                  p.reached, p.expected, seconds(kChangeWait));
      continue;
    }
    totals.push_back(millis(p.last));
    fanouts.push_back(millis(p.last - p.first));
    std::printf("  %s #%zu: %zu agents, first after %.1f ms, last after %.1f ms\n", what, r + 1,
                p.expected, millis(p.first), millis(p.last));
  }
  total_ms = median(totals);
  fanout_ms = median(fanouts);
}

Row run(std::size_t n, const Options& options) {
  Row row;
  row.asked = n;
  std::printf("\n== %zu agents ==\n", n);
  std::fflush(stdout);

  TempDir dir;
  SystemRandom rng;
  if (auto r = coordinator::prepare_state_dir(dir.path()); !r)
    throw std::runtime_error("state dir: " + r.error().message);
  const auto key = take(coordinator::load_or_create_key(dir.path() / coordinator::kKeyFile, rng),
                        "coordinator key");

  ServerProcess server = ServerProcess::spawn(dir.path());
  auto admin = take(coordinator::open_store(dir.path()), "admin store");
  coordinator::TokenOptions token_options;
  token_options.reusable = true;
  const auto token =
      take(coordinator::issue_token(*admin, token_options,
                                    {control::HostPort{"127.0.0.1", server.port()}},
                                    key.public_key, rng, std::time(nullptr)),
           "token");
  const ServerStats before = server.stats();
  row.rss_before_kib = before.rss_kib;
  row.live_before_kib = server.trimmed_stats().rss_kib;

  SwarmConfig config;
  config.port = server.port();
  config.coordinator_key = key.public_key;
  config.token = token.text;
  config.in_flight = options.in_flight;
  config.parse_every = options.parse_every;
  Swarm swarm(config);

  // 1. joins
  const auto budget = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(options.budget_seconds));
  const double agents_cpu_before = own_cpu_seconds();
  const JoinReport joins = swarm.join(n, budget);
  row.joined = joins.joined;
  row.join_s = seconds(joins.elapsed);
  row.capped = joins.budget_exhausted;
  std::printf("  joins: %zu joined, %zu failed, %zu started, in %.2f s (%.0f joins/s)\n",
              joins.joined, joins.failed, joins.launched, row.join_s,
              row.join_s > 0 ? static_cast<double>(joins.joined) / row.join_s : 0.0);
  if (joins.throttled > SteadyClock::duration::zero())
    std::printf("  for %.1f s no join started because the agents' loop was behind\n",
                seconds(joins.throttled));
  if (joins.budget_exhausted)
    std::printf("  capped: the %.0f s budget ran out. Every join sends the joiner a full map of "
                "every node and every other agent a delta, so N joins move O(N^2) bytes.\n",
                options.budget_seconds);
  const auto version = settle(server, swarm);
  const Consistency c = swarm.consistency();
  row.consistent_s = seconds(c.last_update - joins.started);
  const ServerStats joined = server.stats();
  row.agents_cpu_s = own_cpu_seconds() - agents_cpu_before;
  row.server_cpu_s = static_cast<double>(joined.cpu_ms - before.cpu_ms) / 1000;
  row.rss_kib = joined.rss_kib;
  row.live_kib = server.trimmed_stats().rss_kib;
  std::printf("  every agent's map complete %.2f s after the start: %s; %zu open agents at "
              "versions %llu..%llu with %zu..%zu peers (expected %llu)\n",
              row.consistent_s, version ? "settled" : "NOT settled", c.open,
              static_cast<unsigned long long>(c.min_version),
              static_cast<unsigned long long>(c.max_version), c.min_peers, c.max_peers,
              static_cast<unsigned long long>(joined.counters.registered - 1));
  print_stats("before the agents", before);
  print_stats("after the joins", joined);
  std::printf("  VmRSS after malloc_trim: %zu KiB before the agents, %zu KiB after the joins\n",
              row.live_before_kib, row.live_kib);
  std::printf("  CPU for the joins and settling: coordinator %.1f s (%.2f ms per join), agents "
              "%.1f s\n",
              row.server_cpu_s,
              joins.joined > 0 ? row.server_cpu_s * 1000 / static_cast<double>(joins.joined) : 0.0,
              row.agents_cpu_s);

  // 2. one change to every agent
  measure_change("endpoint update", server, swarm, options.repeats, false,
                 [&](std::size_t agent) { return swarm.change_endpoints(agent); },
                 row.endpoint_ms, row.endpoint_fanout_ms);
  measure_change("admin remove", server, swarm, options.repeats, true,
                 [&](std::size_t agent) {
                   const std::string name = swarm.name(agent);
                   const auto made = SteadyClock::now();
                   if (auto r = admin->remove_node(name); !r)
                     std::printf("  admin remove %s: %s\n", name.c_str(),
                                 r.error().message.c_str());
                   return made;
                 },
                 row.remove_ms, row.remove_fanout_ms);

  const SwarmTotals t = swarm.totals();
  print_stats("at the end", server.stats());
  std::printf(
      "  agents received %.1f MiB: %llu full maps (%.1f MiB), %llu deltas (%.1f MiB), %llu "
      "pongs; %llu version gaps, %llu unexpected messages, %llu connections closed by the "
      "coordinator (%llu of them removed nodes)\n",
      static_cast<double>(t.bytes) / (1 << 20), static_cast<unsigned long long>(t.maps),
      static_cast<double>(t.map_bytes) / (1 << 20), static_cast<unsigned long long>(t.deltas),
      static_cast<double>(t.delta_bytes) / (1 << 20), static_cast<unsigned long long>(t.pongs),
      static_cast<unsigned long long>(t.gaps), static_cast<unsigned long long>(t.unexpected),
      static_cast<unsigned long long>(t.closed_by_server),
      static_cast<unsigned long long>(t.removed));
  std::fflush(stdout);
  server.stop();  // before the swarm goes: no storm of disconnects to publish
  return row;
}

std::string ms_text(const std::optional<double>& ms) {
  if (!ms) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.1f ms", *ms);
  return text;
}

void print_table(const std::vector<Row>& rows) {
  std::printf("\n%7s %7s %9s %8s %9s %9s %13s %10s %11s %10s %10s %9s %9s\n", "agents",
              "joined", "join", "joins/s", "all-maps", "CPU/join", "endpoint p50", "(fan-out)",
              "remove p50", "(fan-out)", "coord RSS", "RSS/node", "live/node");
  for (const Row& r : rows) {
    const double delta_kib = static_cast<double>(r.rss_kib) - static_cast<double>(r.rss_before_kib);
    char join[16];
    std::snprintf(join, sizeof join, "%.2f s", r.join_s);
    char consistent[16];
    std::snprintf(consistent, sizeof consistent, "%.2f s", r.consistent_s);
    char rss[16];
    std::snprintf(rss, sizeof rss, "%.1f MiB", static_cast<double>(r.rss_kib) / 1024);
    const double joined = r.joined > 0 ? static_cast<double>(r.joined) : 1.0;
    char per_node[16];
    std::snprintf(per_node, sizeof per_node, "%.1f KiB", delta_kib / joined);
    const double live_kib =
        static_cast<double>(r.live_kib) - static_cast<double>(r.live_before_kib);
    char live_per_node[16];
    std::snprintf(live_per_node, sizeof live_per_node, "%.1f KiB", live_kib / joined);
    char cpu[16];
    std::snprintf(cpu, sizeof cpu, "%.2f ms", r.server_cpu_s * 1000 / joined);
    std::printf("%7zu %6zu%s %9s %8.0f %9s %9s %13s %10s %11s %10s %10s %9s %9s\n", r.asked,
                r.joined, r.capped ? "*" : " ", join,
                r.join_s > 0 ? static_cast<double>(r.joined) / r.join_s : 0.0, consistent, cpu,
                ms_text(r.endpoint_ms).c_str(), ms_text(r.endpoint_fanout_ms).c_str(),
                ms_text(r.remove_ms).c_str(), ms_text(r.remove_fanout_ms).c_str(), rss,
                per_node, live_per_node);
  }
  std::printf(
      "\njoin: first connect to the last agent holding its full map; all-maps: to every agent "
      "holding the final map;\nCPU/join: the coordinator's CPU time over the joins and settling, "
      "per join.\nendpoint/remove: change made to the last agent applying its delta (median); "
      "fan-out: first agent to last.\nRSS/node: (coordinator VmRSS after the joins - before any "
      "agent) / joined; live/node: the same, each measured after malloc_trim(0).%s\n",
      std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.capped; })
          ? "\n* capped: the join budget ran out (see above)."
          : "");
}

int bench_main(int argc, char** argv) {
  Options options;
  CLI::App app("coordinator_bench: joins, change propagation and memory of the coordinator");
  app.add_option("--agents", options.agents, "agent counts to run, one after another")
      ->capture_default_str();
  app.add_option("--in-flight", options.in_flight, "joins under way at once")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--parse-every", options.parse_every,
                 "every K-th agent parses each delta in full (control::parse_message); the "
                 "others read its version and counts off the text")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  app.add_option("--repeats", options.repeats, "changes measured per kind")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--budget", options.budget_seconds, "seconds the joins of one run may take")
      ->check(CLI::Range(1.0, 3600.0))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGPIPE, SIG_IGN);
  set_log_level(LogLevel::warn);
  const rlim_t limit = raise_descriptor_limit();
  std::printf("open file limit %llu per process (the agents and the coordinator each need one "
              "per agent); %zu joins in flight; every %zu%s agent parses each delta in full\n",
              static_cast<unsigned long long>(limit), options.in_flight, options.parse_every,
              options.parse_every == 1 ? "st" : "th");

  std::vector<Row> rows;
  for (std::size_t n : options.agents) {
    if (n == 0) continue;
    if (n + kSpareDescriptors > limit) {
      const std::size_t capped = limit > kSpareDescriptors ? limit - kSpareDescriptors : 0;
      std::printf("\nthe open file limit is %llu: %zu agents need about %zu descriptors in each "
                  "process. Raise the hard limit (ulimit -Hn, LimitNOFILE=) to run them all; "
                  "running %zu instead.\n",
                  static_cast<unsigned long long>(limit), n, n + kSpareDescriptors, capped);
      n = capped;
      if (n == 0) continue;
    }
    try {
      rows.push_back(run(n, options));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "coordinator_bench: %zu agents: %s\n", n, e.what());
    }
  }
  print_table(rows);
  return rows.size() == options.agents.size() ? 0 : 1;
}

}  // namespace
}  // namespace knit::bench

int main(int argc, char** argv) {
  if (argc > 1 && argv[1] == knit::bench::kServerChildFlag)
    return knit::bench::server_child_main(argc, argv);
  return knit::bench::bench_main(argc, argv);
}
