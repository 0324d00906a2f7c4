// wg_flood: a WireGuard handshake flood at one device, for the fault tests. Sends initiations
// with a valid mac1 for the target's public key (so the target cannot drop them as noise and
// must decide whether it is under load) and random content (so none completes), from one UDP
// socket at a fixed rate, and counts what comes back: cookie replies (64 bytes, type 3) show
// that the target demands cookies. Bounded in rate and time.
//
//   wg_flood --target 192.0.2.2:51821 --public-key BASE64 --rate 2000 --seconds 20
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "wg/constants.hpp"
#include "wg/cookie.hpp"

using namespace knit;

int main(int argc, char** argv) {
  CLI::App app{"wg_flood: WireGuard handshake initiations with a valid mac1, at a fixed rate"};
  std::string target, key_text;
  unsigned rate = 1000, seconds = 10;
  app.add_option("--target", target, "HOST:PORT of the device")->required();
  app.add_option("--public-key", key_text, "the device's public key (base64)")->required();
  app.add_option("--rate", rate, "initiations per second")->check(CLI::Range(1u, 50000u));
  app.add_option("--seconds", seconds, "how long (at most 300)")->check(CLI::Range(1u, 300u));
  CLI11_PARSE(app, argc, argv);
  const auto endpoint = Endpoint::parse(target);
  const auto key = from_base64(key_text);
  if (!endpoint || !key || key->size() != wg::kKeySize) {
    std::cerr << "wg_flood: want --target HOST:PORT and --public-key BASE64 (32 bytes)\n";
    return 2;
  }
  wg::PublicKey public_key{};
  std::copy(key->begin(), key->end(), public_key.begin());
  wg::CookieMacs macs;
  macs.configure(public_key);

  sockaddr_storage ss{};
  const unsigned length = endpoint->to_sockaddr(ss);
  const int fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(&ss), length) != 0) {
    std::cerr << "wg_flood: cannot open a UDP socket to " << target << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  SystemRandom rng;
  std::uint64_t sent = 0, cookies = 0, responses = 0, other = 0;
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(seconds);
  std::uint8_t reply[2048];
  while (Clock::now() < end) {
    const auto due = start + std::chrono::microseconds(1000000ull * sent / rate);
    while (Clock::now() < due) {
      pollfd p{fd, POLLIN, 0};
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(due - Clock::now()).count();
      if (::poll(&p, 1, static_cast<int>(std::max<long long>(0, wait))) <= 0) continue;
      while (true) {
        const ssize_t n = ::recv(fd, reply, sizeof reply, 0);
        if (n <= 0) break;
        if (n == static_cast<ssize_t>(wg::kCookieReplySize) && reply[0] == 3) {
          ++cookies;
        } else if (n == static_cast<ssize_t>(wg::kResponseSize) && reply[0] == 2) {
          ++responses;
        } else {
          ++other;
        }
      }
    }
    std::uint8_t msg[wg::kInitiationSize];
    rng.fill(std::span<std::uint8_t>(msg, sizeof msg));
    msg[0] = 1;
    msg[1] = msg[2] = msg[3] = 0;
    macs.add_macs(MutableByteSpan(msg, sizeof msg), Instant{});
    (void)::send(fd, msg, sizeof msg, 0);
    ++sent;
  }
  std::cout << "wg_flood: sent " << sent << " initiations in " << seconds << " s to " << target
            << "; received " << cookies << " cookie replies, " << responses << " responses, "
            << other << " other" << std::endl;
  ::close(fd);
  return 0;
}
