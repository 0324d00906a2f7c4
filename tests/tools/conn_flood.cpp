// conn_flood: many half-open TCP connections to one server, for the fault tests — each is
// connected (the kernel's handshake completes, the server may accept it) and then never sends a
// byte, like a client that died or a slowloris attacker. Bounded in count and time.
//
//   conn_flood --connect 192.0.2.1:7443 --count 10000 --hold 20
//
// Prints one line: how many connected, how many failed (and the first error), how many the
// server had closed by the end of the hold. Exit status 0 when it ran (whatever the server did).
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "base/ip.hpp"

using namespace knit;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  CLI::App app{"conn_flood: many idle TCP connections to one server"};
  std::string target;
  unsigned count = 1000, hold = 10, rate = 5000;
  app.add_option("--connect", target, "HOST:PORT")->required();
  app.add_option("--count", count, "connections (at most 60000)")->check(CLI::Range(1u, 60000u));
  app.add_option("--hold", hold, "seconds to keep them open (at most 600)")->check(CLI::Range(0u, 600u));
  app.add_option("--rate", rate, "new connections per second")->check(CLI::Range(1u, 100000u));
  CLI11_PARSE(app, argc, argv);
  const auto endpoint = Endpoint::parse(target);
  if (!endpoint) {
    std::cerr << "conn_flood: --connect wants HOST:PORT, not " << target << "\n";
    return 2;
  }
  rlimit limit{count + 64, count + 64};
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    std::cerr << "conn_flood: cannot raise the open-file limit to " << limit.rlim_cur << ": "
              << std::strerror(errno) << "\n";
    return 1;
  }
  sockaddr_storage ss{};
  const unsigned length = endpoint->to_sockaddr(ss);
  std::vector<int> fds;
  fds.reserve(count);
  unsigned failed = 0;
  std::string first_error;
  const auto start = Clock::now();
  for (unsigned i = 0; i < count; ++i) {
    // Pace: i connections by start + i / rate.
    const auto due = start + std::chrono::microseconds(1000000ull * i / rate);
    if (Clock::now() < due) std::this_thread::sleep_until(due);
    const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      if (first_error.empty()) first_error = std::string("socket: ") + std::strerror(errno);
      ++failed;
      continue;
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&ss), length) != 0 && errno != EINPROGRESS) {
      if (first_error.empty()) first_error = std::string("connect: ") + std::strerror(errno);
      ::close(fd);
      ++failed;
      continue;
    }
    fds.push_back(fd);
  }
  // Which finished their handshake (writable, no error) within 5 s.
  std::vector<pollfd> polls;
  for (int fd : fds) polls.push_back({fd, POLLOUT, 0});
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  std::vector<bool> done(fds.size(), false);
  unsigned connected = 0, refused = 0;
  while (Clock::now() < deadline && connected + refused < fds.size()) {
    if (::poll(polls.data(), polls.size(), 100) < 0) break;
    for (std::size_t i = 0; i < polls.size(); ++i) {
      if (done[i] || polls[i].revents == 0) continue;
      int error = 0;
      socklen_t len = sizeof error;
      ::getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &error, &len);
      done[i] = true;
      polls[i].events = 0;
      if (error == 0) {
        ++connected;
      } else {
        ++refused;
        if (first_error.empty()) first_error = std::string("handshake: ") + std::strerror(error);
      }
    }
  }
  std::cout << "conn_flood: " << connected << " of " << count << " connected to " << target
            << " in " << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()
            << " ms; holding them for " << hold << " s" << std::endl;
  std::this_thread::sleep_for(std::chrono::seconds(hold));
  // How many the server closed meanwhile (readable with EOF or an error).
  unsigned closed_by_server = 0;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    pollfd p{fds[i], POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) {
      char byte;
      const ssize_t n = ::recv(fds[i], &byte, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN)) ++closed_by_server;
    }
    ::close(fds[i]);
  }
  std::cout << "conn_flood: connected " << connected << ", failed " << failed + refused
            << (first_error.empty() ? "" : " (first: " + first_error + ")") << ", closed by the server during the hold "
            << closed_by_server << std::endl;
  return 0;
}
