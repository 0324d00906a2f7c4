#include "bench/coordinator_bench_server.hpp"

#include <asio.hpp>
#include <malloc.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "base/log.hpp"
#include "base/random.hpp"
#include "coordinator/key_file.hpp"
#include "coordinator/server.hpp"
#include "coordinator/state_dir.hpp"

namespace knit::bench {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// However the bench goes, the child does not outlive this.
constexpr auto kMaxLifetime = std::chrono::hours(2);
constexpr auto kExitWait = std::chrono::seconds(20);

// "VmRSS:     1234 kB" -> 1234.
std::size_t status_kib(std::string_view field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.compare(0, field.size(), field) != 0 || line.size() <= field.size() ||
        line[field.size()] != ':')
      continue;
    return std::stoul(line.substr(field.size() + 1));
  }
  return 0;
}

bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// User and system time of the whole process.
std::uint64_t cpu_ms() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto ms = [](const timeval& t) {
    return static_cast<std::uint64_t>(t.tv_sec) * 1000 + static_cast<std::uint64_t>(t.tv_usec) / 1000;
  };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

std::string stats_line(const coordinator::Server& server) {
  const coordinator::ServerCounters& c = server.counters();
  std::ostringstream out;
  out << "stats cpu_ms " << cpu_ms() << " rss " << status_kib("VmRSS") << " hwm "
      << status_kib("VmHWM") << " sessions "
      << server.session_count() << " online " << server.online_count() << " version "
      << server.map_version() << " accepted " << c.accepted << " registered " << c.registered
      << " rejected " << c.rejected << " handshake_failures " << c.handshake_failures
      << " malformed " << c.malformed << " overflows " << c.queue_overflows << " timeouts "
      << c.timeouts << " refused " << c.refused_connections << "\n";
  return out.str();
}

// The child: `serve` without the CLI. Returns the exit status.
int serve_child(const fs::path& state_dir, const std::string& store_at, pid_t parent,
                int from_parent, int to_parent) {
  // The bench may die without stopping us: go with it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) return 1;
  set_log_level(LogLevel::warn);  // not a line per join

  SystemRandom rng;
  std::string why;
  auto location = coordinator::parse_store_location(store_at, state_dir, why);
  if (!location) throw std::runtime_error("store: " + why);
  auto store = coordinator::open_store(*location);
  if (!store) throw std::runtime_error("cannot open the store: " + store.error().message);
  auto mesh = (*store)->ensure_mesh(std::nullopt, rng);
  if (!mesh) throw std::runtime_error("cannot set up the mesh: " + mesh.error().message);
  auto key = coordinator::load_key(state_dir / coordinator::kKeyFile);
  if (!key) throw std::runtime_error("cannot load the coordinator key: " + key.error().message);

  asio::io_context io;
  coordinator::Server server(io, **store, key->private_key, *mesh, rng);
  server.start(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  if (!write_all(to_parent, "port " + std::to_string(server.local_endpoint().port()) + "\n"))
    return 1;

  asio::posix::stream_descriptor commands(io, from_parent);
  asio::steady_timer deadline(io);
  asio::streambuf buffer;
  auto shut_down = [&] {
    server.stop();
    deadline.cancel();
    std::error_code ignored;
    commands.close(ignored);
  };
  std::function<void()> read_command = [&] {
    asio::async_read_until(commands, buffer, '\n', [&](std::error_code ec, std::size_t n) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) return shut_down();  // EOF: the bench closed its end
      std::string line(asio::buffers_begin(buffer.data()),
                       asio::buffers_begin(buffer.data()) + static_cast<std::ptrdiff_t>(n));
      buffer.consume(n);
      if (line == "stats\n" || line == "trim\n") {
        // trim: what the heap holds live, without the free memory malloc keeps for reuse.
        if (line == "trim\n") ::malloc_trim(0);
        if (!write_all(to_parent, stats_line(server))) return shut_down();
      } else {
        return shut_down();  // "stop", or anything else
      }
      read_command();
    });
  };
  read_command();
  deadline.expires_after(kMaxLifetime);
  deadline.async_wait([&](std::error_code ec) {
    if (!ec) shut_down();
  });
  io.run();
  return 0;
}

}  // namespace

int server_child_main(int argc, char** argv) {
  // kServerChildFlag STATE_DIR FROM_PARENT_FD TO_PARENT_FD PARENT_PID STORE
  if (argc != 7 || argv[1] != kServerChildFlag) {
    std::fprintf(stderr, "coordinator_bench: %s is for the bench's own use\n",
                 kServerChildFlag.data());
    return 2;
  }
  try {
    return serve_child(argv[2], argv[6], static_cast<pid_t>(std::stol(argv[5])),
                       std::stoi(argv[3]), std::stoi(argv[4]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coordinator_bench: coordinator: %s\n", e.what());
    return 1;
  }
}

ServerProcess ServerProcess::spawn(const fs::path& state_dir, const std::string& store) {
  int down[2];  // parent -> child
  int up[2];    // child -> parent
  if (::pipe2(down, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  if (::pipe2(up, O_CLOEXEC) != 0) {
    ::close(down[0]);
    ::close(down[1]);
    throw std::runtime_error("pipe failed");
  }
  // A fresh program image rather than a copy of this process: its memory is the server's
  // alone, whatever the bench allocated before.
  const std::string dir = state_dir.string();
  const std::string from_parent = std::to_string(down[0]);
  const std::string to_parent = std::to_string(up[1]);
  const std::string parent = std::to_string(::getpid());
  const std::string flag(kServerChildFlag);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::fcntl(down[0], F_SETFD, 0);
    ::fcntl(up[1], F_SETFD, 0);
    ::execl("/proc/self/exe", "coordinator_bench", flag.c_str(), dir.c_str(),
            from_parent.c_str(), to_parent.c_str(), parent.c_str(), store.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(down[0]);
  ::close(up[1]);
  ServerProcess process(pid, down[1], up[0]);
  const std::string line = process.read_line(30s);
  unsigned port = 0;
  if (std::sscanf(line.c_str(), "port %u", &port) != 1 || port == 0 || port > 65535)
    throw std::runtime_error("the coordinator did not start (see above)");
  process.port_ = static_cast<std::uint16_t>(port);
  return process;
}

ServerProcess::ServerProcess(ServerProcess&& other) noexcept
    : pid_(other.pid_),
      to_child_(other.to_child_),
      from_child_(other.from_child_),
      port_(other.port_),
      pending_(std::move(other.pending_)) {
  other.pid_ = -1;
  other.to_child_ = -1;
  other.from_child_ = -1;
}

ServerProcess::~ServerProcess() { stop(); }

std::string ServerProcess::read_line(std::chrono::milliseconds within) {
  const auto until = SteadyClock::now() + within;
  for (;;) {
    if (const auto end = pending_.find('\n'); end != std::string::npos) {
      std::string line = pending_.substr(0, end);
      pending_.erase(0, end + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    if (from_child_ < 0 || left.count() <= 0)
      throw std::runtime_error("the coordinator did not answer in time");
    pollfd p{from_child_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buffer[512];
    const ssize_t n = ::read(from_child_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("the coordinator exited");
    pending_.append(buffer, static_cast<std::size_t>(n));
  }
}

ServerStats ServerProcess::stats(std::chrono::milliseconds within) { return ask("stats\n", within); }

ServerStats ServerProcess::trimmed_stats(std::chrono::milliseconds within) {
  return ask("trim\n", within);
}

ServerStats ServerProcess::ask(std::string_view command, std::chrono::milliseconds within) {
  if (to_child_ < 0 || !write_all(to_child_, command))
    throw std::runtime_error("the coordinator is gone");
  std::istringstream in(read_line(within));
  ServerStats s;
  coordinator::ServerCounters& c = s.counters;
  std::string word;
  in >> word;
  while (in >> word) {
    std::uint64_t value = 0;
    if (!(in >> value)) break;
    if (word == "cpu_ms") s.cpu_ms = value;
    else if (word == "rss") s.rss_kib = value;
    else if (word == "hwm") s.hwm_kib = value;
    else if (word == "sessions") s.sessions = value;
    else if (word == "online") s.online = value;
    else if (word == "version") s.map_version = value;
    else if (word == "accepted") c.accepted = value;
    else if (word == "registered") c.registered = value;
    else if (word == "rejected") c.rejected = value;
    else if (word == "handshake_failures") c.handshake_failures = value;
    else if (word == "malformed") c.malformed = value;
    else if (word == "overflows") c.queue_overflows = value;
    else if (word == "timeouts") c.timeouts = value;
    else if (word == "refused") c.refused_connections = value;
  }
  return s;
}

void ServerProcess::stop() {
  if (pid_ < 0) return;
  // EOF on its command pipe stops the server.
  ::close(to_child_);
  to_child_ = -1;
  const auto until = SteadyClock::now() + kExitWait;
  int status = 0;
  pid_t done = 0;
  while ((done = ::waitpid(pid_, &status, WNOHANG)) == 0 && SteadyClock::now() < until)
    std::this_thread::sleep_for(10ms);
  if (done == 0) {
    std::fprintf(stderr, "coordinator_bench: the coordinator did not exit; killing it\n");
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  ::close(from_child_);
  from_child_ = -1;
  pid_ = -1;
}

}  // namespace knit::bench
