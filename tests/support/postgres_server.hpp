// A real PostgreSQL server for the store tests, from Debian's postgresql package: initdb and
// pg_ctl in a temporary directory, listening only on a Unix socket in it, run as an
// unprivileged user (nobody, when the tests run as root: PostgreSQL refuses root), stopped and
// removed when the test program exits. One server per test program; each test gets a database
// of its own (fresh_database()).
//
// When the package is not installed, available() is false and why() says so: the tests that
// need it skip with that reason (scripts/setup.sh installs it).
#pragma once

#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <memory>
#include <string>
#include <vector>

#include <libpq-fe.h>

namespace knit::testing {

class PostgresServer {
 public:
  // The process-wide server, started on first use.
  static PostgresServer& instance() {
    static PostgresServer server;
    return server;
  }

  bool available() const { return running_; }
  const std::string& why() const { return why_; }
  const std::string& socket_dir() const { return socket_dir_; }

  // A connection string for an empty database made for the caller.
  std::string fresh_database() {
    static std::atomic<int> counter{0};
    const std::string name = "knit_test_" + std::to_string(::getpid()) + "_" +
                             std::to_string(counter++);
    PGconn* admin = PQconnectdb(conninfo("postgres").c_str());
    if (PQstatus(admin) == CONNECTION_OK) {
      PQclear(PQexec(admin, ("CREATE DATABASE " + name).c_str()));
    }
    PQfinish(admin);
    return conninfo(name);
  }

  std::string conninfo(const std::string& database) const {
    return "host=" + socket_dir_ + " port=5432 user=knit dbname=" + database +
           " connect_timeout=5";
  }

  // Settings given to every start (postgres -c ...). The store tests run with fsync off (their
  // data is thrown away); a benchmark may ask for PostgreSQL's defaults before instance().
  static std::string& settings() {
    static std::string value = "-c fsync=off";
    return value;
  }

  // CPU time (user + system) of the whole cluster so far, in ms: the postmaster, its live
  // children and those it reaped. 0 when /proc cannot tell.
  std::uint64_t cpu_ms() const {
    std::ifstream pidfile(dir_ + "/data/postmaster.pid");
    long postmaster = 0;
    if (!(pidfile >> postmaster) || postmaster <= 0) return 0;
    const long ticks = ::sysconf(_SC_CLK_TCK);
    std::uint64_t total = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat(entry.path() / "stat");
      std::string line;
      if (!std::getline(stat, line)) continue;
      const auto close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream fields(line.substr(close + 2));
      std::string state;
      long ppid = 0;
      fields >> state >> ppid;
      const long pid = std::stol(name);
      if (pid != postmaster && ppid != postmaster) continue;
      std::string skip;
      for (int i = 0; i < 9; ++i) fields >> skip;  // pgrp .. cmajflt
      std::uint64_t utime = 0, stime = 0, cutime = 0, cstime = 0;
      fields >> utime >> stime >> cutime >> cstime;
      total += utime + stime + (pid == postmaster ? cutime + cstime : 0);
    }
    return ticks > 0 ? total * 1000 / static_cast<std::uint64_t>(ticks) : 0;
  }

  // Stops and starts the server: connections drop, data stays.
  bool restart() { return run_ctl("restart") == 0; }
  bool stop_server() { return run_ctl("stop") == 0; }
  bool start_server() { return run_ctl("start") == 0; }

  ~PostgresServer() {
    if (running_) run_ctl("stop");
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

 private:
  PostgresServer() {
    bin_ = find_bin();
    if (bin_.empty()) {
      why_ = "PostgreSQL is not installed (apt-get install postgresql; scripts/setup.sh does)";
      return;
    }
    std::string pattern = (std::filesystem::temp_directory_path() / "knit-pg-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      why_ = "mkdtemp failed";
      return;
    }
    dir_ = pattern;
    socket_dir_ = dir_ + "/socket";
    std::filesystem::create_directories(socket_dir_);
    if (::geteuid() == 0) {
      const passwd* nobody = ::getpwnam("nobody");
      if (nobody == nullptr) {
        why_ = "running as root and there is no user 'nobody' to run PostgreSQL as";
        return;
      }
      uid_ = nobody->pw_uid;
      gid_ = nobody->pw_gid;
      for (const auto& path : {dir_, socket_dir_}) {
        if (::chown(path.c_str(), uid_, gid_) != 0) {
          why_ = "cannot hand " + path + " to nobody";
          return;
        }
      }
      ::chmod(dir_.c_str(), 0755);
    }
    if (run({bin_ + "/initdb", "-D", dir_ + "/data", "-U", "knit", "-A", "trust", "-N",
             "--no-instructions", "-E", "UTF8"}) != 0) {
      why_ = "initdb failed (see above)";
      return;
    }
    if (run_ctl("start") != 0) {
      why_ = "pg_ctl start failed (see " + dir_ + "/log)";
      return;
    }
    running_ = true;
  }

  static std::string find_bin() {
    std::error_code ec;
    std::string best;
    for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
      const std::string bin = entry.path().string() + "/bin";
      if (std::filesystem::exists(bin + "/initdb") && std::filesystem::exists(bin + "/pg_ctl") &&
          bin > best)
        best = bin;
    }
    return best;
  }

  int run_ctl(const std::string& what) {
    return run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-l", dir_ + "/log", "-w", "-t", "30",
                "-o", "-k " + socket_dir_ + " -c listen_addresses='' " + settings() + " -p 5432", what});
  }

  // Runs argv as the unprivileged user (or as ourselves when we are not root); exit status.
  int run(const std::vector<std::string>& argv) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      if (uid_ != 0) {
        if (::setgid(gid_) != 0 || ::setuid(uid_) != 0) ::_exit(126);
      }
      if (::chdir(dir_.c_str()) != 0) ::_exit(126);
      // Quiet unless it fails: initdb and pg_ctl talk a lot.
      if (std::FILE* quiet = std::freopen("/dev/null", "w", stdout); quiet == nullptr) ::_exit(126);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string bin_;
  std::string dir_;
  std::string socket_dir_;
  std::string why_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool running_ = false;
};

}  // namespace knit::testing
