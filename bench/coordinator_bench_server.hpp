// The coordinator under test, in a child process of its own so that its memory (VmRSS) can be
// read apart from the simulated agents'. It is built the way `knit-coordinator serve` builds it
// (serve_command.cpp): a prepared state directory, the store, ensure_mesh, the key file, a
// Server with the default ServerOptions, on 127.0.0.1:0.
//
//   bench (parent)                          coordinator (child: this program again, exec'd
//     prepare_state_dir, key file            with kServerChildFlag, so nothing of the parent's
//                                            memory is in its RSS)
//     fork, exec ─────────────────────────► open_store (SQLite or PostgreSQL), ensure_mesh,
//                                            load_key, Server::start
//          ◄──────────── "port P" ─────────
//     "stats" ────────────────────────────►
//          ◄── "rss K hwm K sessions ..." ─ /proc/self/status and the server's counters
//     "trim" ─────────────────────────────► the same after malloc_trim(0)
//     "stop" (or EOF) ────────────────────► Server::stop, exit
//
// The pipes are read on the server's own event loop, so a stats request waits its turn behind
// whatever the server is doing: it also tells that the loop is responsive.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "coordinator/agent_session.hpp"

namespace knit::bench {

// main() hands a command line starting with this flag to server_child_main.
inline constexpr std::string_view kServerChildFlag = "--coordinator-child";
int server_child_main(int argc, char** argv);

struct ServerStats {
  std::uint64_t cpu_ms = 0;  // user + system, since the child started
  std::size_t rss_kib = 0;   // VmRSS
  std::size_t hwm_kib = 0;  // VmHWM: the peak RSS
  std::size_t sessions = 0;
  std::size_t online = 0;
  std::uint64_t map_version = 0;
  coordinator::ServerCounters counters;
};

class ServerProcess {
 public:
  // Starts a coordinator serving state_dir (prepared, with its key file) on 127.0.0.1:0, on the
  // store at `store` (a --store location; empty: knit.db in state_dir). Throws
  // std::runtime_error.
  static ServerProcess spawn(const std::filesystem::path& state_dir, const std::string& store);

  ServerProcess(ServerProcess&& other) noexcept;
  ServerProcess& operator=(ServerProcess&&) = delete;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess();  // stop()

  std::uint16_t port() const { return port_; }
  // Asks the child; throws std::runtime_error when it does not answer within `within`.
  ServerStats stats(std::chrono::milliseconds within = std::chrono::seconds(60));
  // The same after malloc_trim(0): the heap's free memory handed back to the system first.
  ServerStats trimmed_stats(std::chrono::milliseconds within = std::chrono::seconds(60));
  // Asks the child to stop, waits for it (bounded), kills it if it does not exit. Idempotent.
  void stop();

 private:
  ServerProcess(pid_t pid, int to_child, int from_child)
      : pid_(pid), to_child_(to_child), from_child_(from_child) {}
  ServerStats ask(std::string_view command, std::chrono::milliseconds within);
  std::string read_line(std::chrono::milliseconds within);

  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::uint16_t port_ = 0;
  std::string pending_;  // bytes read past the last line
};

}  // namespace knit::bench
