// A small DNS server and client for the netns tests (knit_dns for the wire format).
//
//   dns_lab serve IP       answers on IP:53, UDP and TCP: NAME.lab.example A 198.51.100.7
//                          (TTL 60), big.lab.example A 198.51.100.8 but over UDP only a
//                          truncated answer (TC), so a resolver must come back over TCP;
//                          huge.lab.example the same with 80 A records (198.51.100.10-89),
//                          too large for a stub's 512-byte UDP answer;
//                          anything else NXDOMAIN. Prints one line per query.
//   dns_lab query SERVER NAME [TYPE] [--timeout S]
//                          one UDP query (TYPE: A, AAAA, PTR; default A); prints the rcode
//                          name and each answer's address, or "timeout"; exit 0 on an answer
//   dns_lab flood SERVER NAME COUNT
//                          COUNT UDP queries, 100 back to back per millisecond; prints
//                          "sent N answered M"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "dns/message.hpp"

using namespace knit;
using namespace knit::dns;

namespace {

Bytes answer_for(const Query& q, bool over_udp) {
  const bool ours = q.name == "lab.example" || q.name.ends_with(".lab.example");
  if (!ours) return build_response(q, Rcode::nxdomain, {}, {}, true);
  if (q.qtype != type::A) return build_response(q, Rcode::noerror, {}, {}, true);
  if (q.name == "huge.lab.example") {
    // 80 addresses (about 1.3 KB): over 512 bytes, so a stub without EDNS must ask over TCP
    // too. Over UDP only TC, as for big.lab.example.
    if (over_udp) {
      Bytes tc = build_response(q, Rcode::noerror, {}, {}, true);
      tc[2] |= 0x02;
      return tc;
    }
    std::vector<Record> records;
    for (int i = 0; i < 80; ++i)
      records.push_back(Record{q.name, 60, IpAddress::parse("198.51.100." + std::to_string(10 + i)).value()});
    return build_response(q, Rcode::noerror, records, {}, true);
  }
  if (q.name == "big.lab.example") {
    if (over_udp) {
      Bytes tc = build_response(q, Rcode::noerror, {}, {}, true);
      tc[2] |= 0x02;
      return tc;
    }
    Record r{q.name, 60, IpAddress::parse("198.51.100.8").value()};
    return build_response(q, Rcode::noerror, std::span<const Record>(&r, 1), {}, true);
  }
  Record r{q.name, 60, IpAddress::parse("198.51.100.7").value()};
  return build_response(q, Rcode::noerror, std::span<const Record>(&r, 1), {}, true);
}

int serve(const char* ip) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(53);
  if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) return 2;
  const int udp = socket(AF_INET, SOCK_DGRAM, 0);
  const int tcp = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(udp, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      bind(tcp, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(tcp, 16) != 0) {
    std::perror("dns_lab: bind");
    return 1;
  }
  std::cout << "listening on " << ip << ":53" << std::endl;
  std::vector<std::uint8_t> buf(65536);
  for (;;) {
    pollfd fds[2] = {{udp, POLLIN, 0}, {tcp, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[0].revents & POLLIN) {
      sockaddr_storage from{};
      socklen_t len = sizeof from;
      const ssize_t n = recvfrom(udp, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n <= 0) continue;
      auto parsed = parse_query(ByteSpan(buf.data(), static_cast<std::size_t>(n)));
      if (const Query* q = std::get_if<Query>(&parsed)) {
        const Bytes out = answer_for(*q, true);
        std::cout << "udp " << q->name << " " << q->qtype << std::endl;
        sendto(udp, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    }
    if (fds[1].revents & POLLIN) {
      const int c = accept(tcp, nullptr, nullptr);
      if (c < 0) continue;
      timeval tv{2, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::uint8_t len[2];
      if (recv(c, len, 2, MSG_WAITALL) == 2) {
        const std::size_t size = load_be16(len);
        if (recv(c, buf.data(), size, MSG_WAITALL) == static_cast<ssize_t>(size)) {
          auto parsed = parse_query(ByteSpan(buf.data(), size));
          if (const Query* q = std::get_if<Query>(&parsed)) {
            const Bytes out = answer_for(*q, false);
            std::cout << "tcp " << q->name << " " << q->qtype << std::endl;
            std::uint8_t prefix[2];
            store_be16(prefix, static_cast<std::uint16_t>(out.size()));
            send(c, prefix, 2, MSG_NOSIGNAL);
            send(c, out.data(), out.size(), MSG_NOSIGNAL);
          }
        }
      }
      close(c);
    }
  }
}

// A query, by hand: header (RD set), QNAME labels, QTYPE, QCLASS IN.
Bytes query_message(std::uint16_t id, const std::string& name, std::uint16_t qtype) {
  Bytes q = {static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id), 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  std::size_t start = 0;
  while (start < name.size()) {
    std::size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    q.push_back(static_cast<std::uint8_t>(dot - start));
    q.insert(q.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  for (std::uint8_t b : {std::uint8_t{0}, static_cast<std::uint8_t>(qtype >> 8), static_cast<std::uint8_t>(qtype),
                         std::uint8_t{0}, std::uint8_t{1}})
    q.push_back(b);
  return q;
}

int query(const std::string& server, const std::string& name, const std::string& type_name, int timeout_ms) {
  std::uint16_t qtype = type::A;
  if (type_name == "AAAA") qtype = type::AAAA;
  if (type_name == "PTR") qtype = type::PTR;
  SystemRandom rng;
  const auto id = static_cast<std::uint16_t>(rng.uniform(65536));
  const Bytes q = query_message(id, name, qtype);
  auto to = Endpoint::parse(server.find(':') == std::string::npos ? server + ":53" : server);
  if (!to) return 2;
  sockaddr_storage ss{};
  const unsigned len = to->to_sockaddr(ss);
  const int s = socket(ss.ss_family, SOCK_DGRAM, 0);
  sendto(s, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
  pollfd p{s, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) {
    std::cout << "timeout" << std::endl;
    return 1;
  }
  std::vector<std::uint8_t> buf(65536);
  const ssize_t n = recv(s, buf.data(), buf.size(), 0);
  if (n < 12 || load_be16(buf.data()) != id) {
    std::cout << "bad answer" << std::endl;
    return 1;
  }
  const int rcode = buf[3] & 0x0f;
  static const char* names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"};
  std::cout << (rcode < 6 ? names[rcode] : "RCODE?") << " answers=" << load_be16(buf.data() + 6) << std::endl;
  return 0;
}

// COUNT queries for NAME as fast as one UDP socket sends them, then whatever answers arrive
// within a second of the last: "sent N answered M".
int flood(const std::string& server, const std::string& name, int count) {
  auto to = Endpoint::parse(server.find(':') == std::string::npos ? server + ":53" : server);
  if (!to || count <= 0) return 2;
  sockaddr_storage ss{};
  const unsigned len = to->to_sockaddr(ss);
  const int s = socket(ss.ss_family, SOCK_DGRAM, 0);
  Bytes q = query_message(0, name, type::A);
  int answered = 0;
  std::vector<std::uint8_t> buf(65536);
  auto drain = [&](int timeout_ms) {
    pollfd p{s, POLLIN, 0};
    while (poll(&p, 1, timeout_ms) > 0)
      if (recv(s, buf.data(), buf.size(), 0) >= 12) ++answered;
  };
  for (int i = 0; i < count; ++i) {
    store_be16(q.data(), static_cast<std::uint16_t>(i));
    sendto(s, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
    // 100 back to back, then a millisecond: a flood (tens of thousands a second) that the TUN's
    // queue still takes whole, so what knitd drops is its own decision.
    if (i % 100 == 99) {
      drain(0);
      usleep(1000);
    }
  }
  drain(1000);
  std::cout << "sent " << count << " answered " << answered << std::endl;
  close(s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 5 && std::string(argv[1]) == "flood") return flood(argv[2], argv[3], std::stoi(argv[4]));
  if (argc >= 3 && std::string(argv[1]) == "serve") return serve(argv[2]);
  if (argc >= 4 && std::string(argv[1]) == "query") {
    std::string type_name = "A";
    int timeout_ms = 2000;
    for (int i = 4; i < argc; ++i) {
      if (std::string(argv[i]) == "--timeout" && i + 1 < argc) timeout_ms = static_cast<int>(std::stod(argv[++i]) * 1000);
      else type_name = argv[i];
    }
    return query(argv[2], argv[3], type_name, timeout_ms);
  }
  std::cerr << "usage: dns_lab serve IP | dns_lab query SERVER NAME [A|AAAA|PTR] [--timeout S] | dns_lab flood SERVER NAME COUNT\n";
  return 2;
}
