// A UDP application that does path MTU discovery the way RFC 8899's datagram users and QUIC
// stacks on Linux do, for the netns tests: DF on every datagram (IP_PMTUDISC_DO), and when the
// kernel refuses one with EMSGSIZE (it learned a smaller path MTU from an ICMP "fragmentation
// needed"), read the path MTU (IP_MTU) and send smaller datagrams from then on.
//
//   udp_pmtu send IP PORT SIZE COUNT   COUNT datagrams of SIZE bytes, 20 ms apart, shrinking
//                                      to the path MTU when told; prints
//                                      "sent N emsgsize E mtu M size S"
//   udp_pmtu recv IP PORT SECONDS      counts what arrives for SECONDS; prints
//                                      "datagrams N largest L"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

bool address(const char* ip, int port, sockaddr_in& out) {
  out = {};
  out.sin_family = AF_INET;
  out.sin_port = htons(static_cast<std::uint16_t>(port));
  return inet_pton(AF_INET, ip, &out.sin_addr) == 1;
}

int send_mode(const char* ip, int port, int size, int count) {
  sockaddr_in to{};
  if (!address(ip, port, to) || size < 1 || size > 65507 || count < 1) return 2;
  const int s = socket(AF_INET, SOCK_DGRAM, 0);
  const int discover = IP_PMTUDISC_DO;
  if (s < 0 || setsockopt(s, IPPROTO_IP, IP_MTU_DISCOVER, &discover, sizeof discover) != 0 ||
      connect(s, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    std::cerr << "udp_pmtu: " << std::strerror(errno) << "\n";
    return 2;
  }
  int sent = 0, refused = 0, mtu = 0;
  std::vector<char> payload(static_cast<std::size_t>(size), 'x');
  for (int i = 0; i < count; ++i) {
    if (send(s, payload.data(), payload.size(), 0) >= 0) {
      ++sent;
    } else if (errno == EMSGSIZE) {
      ++refused;
      socklen_t len = sizeof mtu;
      if (getsockopt(s, IPPROTO_IP, IP_MTU, &mtu, &len) == 0 && mtu > 28)
        payload.resize(static_cast<std::size_t>(mtu - 28));  // IPv4 and UDP headers
    } else if (errno != ECONNREFUSED) {
      std::cerr << "udp_pmtu: send: " << std::strerror(errno) << "\n";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::cout << "sent " << sent << " emsgsize " << refused << " mtu " << mtu << " size " << payload.size() << std::endl;
  close(s);
  return 0;
}

int recv_mode(const char* ip, int port, int seconds) {
  sockaddr_in at{};
  if (!address(ip, port, at) || seconds < 1) return 2;
  const int s = socket(AF_INET, SOCK_DGRAM, 0);
  if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0) {
    std::cerr << "udp_pmtu: bind: " << std::strerror(errno) << "\n";
    return 2;
  }
  std::cout << "listening" << std::endl;
  int datagrams = 0;
  long largest = 0;
  std::vector<char> buffer(65536);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{s, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = recv(s, buffer.data(), buffer.size(), 0);
    if (n < 0) continue;
    ++datagrams;
    largest = std::max<long>(largest, n);
  }
  std::cout << "datagrams " << datagrams << " largest " << largest << std::endl;
  close(s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 6 && std::string(argv[1]) == "send") return send_mode(argv[2], std::stoi(argv[3]), std::stoi(argv[4]), std::stoi(argv[5]));
  if (argc == 5 && std::string(argv[1]) == "recv") return recv_mode(argv[2], std::stoi(argv[3]), std::stoi(argv[4]));
  std::cerr << "usage: udp_pmtu send IP PORT SIZE COUNT | udp_pmtu recv IP PORT SECONDS\n";
  return 2;
}
