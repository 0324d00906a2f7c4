#include "dns/tcp_server.hpp"

#include <algorithm>

#include "dns/constants.hpp"
#include "dns/ip_packet.hpp"

namespace knit::dns {
namespace {

constexpr std::uint8_t kFin = 0x01;
constexpr std::uint8_t kSyn = 0x02;
constexpr std::uint8_t kRst = 0x04;
constexpr std::uint8_t kPsh = 0x08;
constexpr std::uint8_t kAck = 0x10;

constexpr std::size_t kTcpHeader = 20;
constexpr std::size_t kDnsHeader = 12;
// What we offer the client: enough for a few pipelined queries, never scaled.
constexpr std::size_t kReceiveWindow = 4096;

// RFC 9293 §3.4: sequence numbers compare modulo 2^32.
bool seq_lt(std::uint32_t a, std::uint32_t b) { return static_cast<std::int32_t>(a - b) < 0; }

// RFC 9293 §3.7.1 / RFC 879: the MSS a peer takes when it sent no option.
std::uint16_t default_mss(const IpAddress& address) { return address.is_v4() ? 536 : 1220; }

}  // namespace

struct TcpServer::Segment {
  Endpoint client;  // local() = the server address
  std::uint16_t server_port = 0;
  std::uint32_t seq = 0;
  std::uint32_t ack = 0;
  std::uint8_t flags = 0;
  std::uint16_t window = 0;
  std::optional<std::uint16_t> mss;
  ByteSpan data;

  bool has(std::uint8_t flag) const { return (flags & flag) != 0; }
  // Sequence space the segment takes: its bytes, plus one each for SYN and FIN.
  std::uint32_t length() const {
    return static_cast<std::uint32_t>(data.size()) + (has(kSyn) ? 1u : 0u) + (has(kFin) ? 1u : 0u);
  }

  static std::optional<Segment> parse(ByteSpan packet) {
    const auto ip = parse_ip_packet(packet);
    if (!ip || ip->protocol != kProtocolTcp) return std::nullopt;
    const ByteSpan tcp = ip->payload;
    if (tcp.size() < kTcpHeader) return std::nullopt;
    const std::size_t offset = static_cast<std::size_t>(tcp[12] >> 4) * 4;
    if (offset < kTcpHeader || offset > tcp.size()) return std::nullopt;
    Segment s;
    s.client = Endpoint(ip->source, load_be16(tcp.data()));
    s.client.set_local(ip->destination);
    s.server_port = load_be16(tcp.data() + 2);
    s.seq = load_be32(tcp.data() + 4);
    s.ack = load_be32(tcp.data() + 8);
    s.flags = tcp[13];
    s.window = load_be16(tcp.data() + 14);
    s.data = tcp.subspan(offset);
    // Options: only MSS matters (we offer no window scaling, SACK or timestamps, so the
    // client uses none). Each kind past NOP/EOL carries its length; a bad one ends the walk.
    for (std::size_t i = kTcpHeader; i < offset;) {
      const std::uint8_t kind = tcp[i];
      if (kind == 0) break;
      if (kind == 1) {
        ++i;
        continue;
      }
      if (i + 1 >= offset) break;
      const std::size_t length = tcp[i + 1];
      if (length < 2 || i + length > offset) break;
      if (kind == 2 && length == 4) s.mss = load_be16(tcp.data() + i + 2);
      i += length;
    }
    return s;
  }
};

namespace {

// One segment from the server (source port 53) to `client`.
Bytes build_segment(const Endpoint& client, std::uint32_t seq, std::uint32_t ack, std::uint8_t flags,
                    std::uint16_t window, std::optional<std::uint16_t> mss, ByteSpan data) {
  const std::size_t options = mss ? 4 : 0;
  Bytes tcp(kTcpHeader + options + data.size(), 0);
  store_be16(tcp.data(), kDnsPort);
  store_be16(tcp.data() + 2, client.port());
  store_be32(tcp.data() + 4, seq);
  store_be32(tcp.data() + 8, (flags & kAck) ? ack : 0);
  tcp[12] = static_cast<std::uint8_t>(((kTcpHeader + options) / 4) << 4);
  tcp[13] = flags;
  store_be16(tcp.data() + 14, window);
  if (mss) {
    tcp[20] = 2;
    tcp[21] = 4;
    store_be16(tcp.data() + 22, *mss);
  }
  std::copy(data.begin(), data.end(), tcp.begin() + static_cast<std::ptrdiff_t>(kTcpHeader + options));
  return build_ip_packet(*client.local(), client.address(), kProtocolTcp, tcp, 16);
}

}  // namespace

TcpServer::Key TcpServer::key_of(const Endpoint& client) {
  return Key{client.address(), client.port(), client.local().value_or(IpAddress{})};
}

std::uint16_t TcpServer::window(const Connection& c) const {
  return static_cast<std::uint16_t>(kReceiveWindow - std::min(kReceiveWindow, c.received.size()));
}

void TcpServer::on_segment(Instant now, ByteSpan packet, Random& rng, Actions& out) {
  const auto segment = Segment::parse(packet);
  if (!segment || segment->server_port != kDnsPort || !segment->client.local() ||
      segment->client.local()->is_v4() != segment->client.address().is_v4()) {
    ++counters_.malformed;
    return;
  }
  const auto it = connections_.find(key_of(segment->client));
  if (it == connections_.end()) {
    on_new(now, *segment, rng, out);
    return;
  }
  if (!on_existing(now, it->second, *segment, out)) connections_.erase(it);
}

void TcpServer::on_new(Instant now, const Segment& s, Random& rng, Actions& out) {
  if (s.has(kRst)) return;  // RFC 9293 §3.10.7.1: an RST for nothing is ignored
  if (s.has(kAck)) {
    // Something of a connection we no longer have (closed, timed out, or knitd restarted).
    ++counters_.resets_sent;
    out.packets.push_back(build_segment(s.client, s.ack, 0, kRst, 0, std::nullopt, {}));
    return;
  }
  if (!s.has(kSyn) || connections_.size() >= options_.max_connections) {
    if (s.has(kSyn)) ++counters_.refused_full;
    ++counters_.resets_sent;
    out.packets.push_back(build_segment(s.client, 0, s.seq + s.length(), kRst | kAck, 0, std::nullopt, {}));
    return;
  }
  Connection c;
  c.client = s.client;
  std::uint8_t isn[4];
  rng.fill(isn);
  c.iss = load_be32(isn);
  c.snd_una = c.iss;
  c.snd_nxt = c.iss + 1;
  c.snd_wnd = s.window;
  c.rcv_nxt = s.seq + 1;  // data on the SYN (TCP Fast Open) is not taken: it comes again
  c.send_mss = std::min(options_.mss, s.mss.value_or(default_mss(s.client.address())));
  c.send_mss = std::max<std::uint16_t>(c.send_mss, 64);
  c.rto = options_.initial_rto;
  c.rto_deadline = now + c.rto;
  c.idle_deadline = now + options_.idle_timeout;
  ++counters_.connections;
  out.packets.push_back(build_segment(c.client, c.iss, c.rcv_nxt, kSyn | kAck, window(c), options_.mss, {}));
  connections_.emplace(key_of(c.client), std::move(c));
}

bool TcpServer::on_existing(Instant now, Connection& c, const Segment& s, Actions& out) {
  const std::uint32_t in_window_end = c.rcv_nxt + std::max<std::uint32_t>(window(c), 1);
  const bool seq_in_window = !seq_lt(s.seq, c.rcv_nxt) && seq_lt(s.seq, in_window_end);
  if (s.has(kRst)) {
    // RFC 5961 §3.2: only an RST at exactly the next expected byte closes; one elsewhere in
    // the window earns a challenge ACK; the rest are ignored.
    if (s.seq == c.rcv_nxt) {
      ++counters_.resets_received;
      return false;
    }
    if (seq_in_window) send_ack(c, out);
    return true;
  }
  if (s.has(kSyn)) {
    if (c.state == State::syn_received && s.seq + 1 == c.rcv_nxt) {
      // Our SYN-ACK was lost or is late: the same answer again.
      out.packets.push_back(build_segment(c.client, c.iss, c.rcv_nxt, kSyn | kAck, window(c), options_.mss, {}));
      return true;
    }
    send_ack(c, out);  // RFC 5961 §4: a challenge ACK, never a reset on a SYN
    return true;
  }
  if (!s.has(kAck)) return true;  // RFC 9293 §3.10.7.4: no ACK, no processing

  if (c.state == State::syn_received) {
    if (s.ack != c.iss + 1) {
      ++counters_.resets_sent;
      out.packets.push_back(build_segment(c.client, s.ack, 0, kRst, 0, std::nullopt, {}));
      return true;
    }
    c.state = State::established;
    c.snd_una = c.iss + 1;
    c.retries = 0;
    c.rto = options_.initial_rto;
    c.rto_deadline.reset();
  }

  // The acknowledgment.
  if (seq_lt(c.snd_nxt, s.ack)) {
    send_ack(c, out);  // acknowledges what we never sent
    return true;
  }
  if (seq_lt(c.snd_una, s.ack)) {
    const std::uint32_t acked = s.ack - c.snd_una;
    const std::size_t data = std::min<std::size_t>(acked, c.send.size());
    c.send.erase(c.send.begin(), c.send.begin() + static_cast<std::ptrdiff_t>(data));
    c.snd_una = s.ack;
    c.retries = 0;
    c.rto = options_.initial_rto;
    if (c.snd_una == c.snd_nxt) c.rto_deadline.reset();
    else c.rto_deadline = now + c.rto;
  }
  c.snd_wnd = s.window;

  // The bytes (and FIN) it carries, taken only in order.
  ByteSpan data = s.data;
  bool fin = s.has(kFin);
  std::uint32_t seq = s.seq;
  bool ack_due = false;
  if (!data.empty() || fin) {
    if (seq_lt(seq, c.rcv_nxt)) {
      const std::uint32_t old = c.rcv_nxt - seq;
      if (old >= data.size() + (fin ? 1u : 0u)) {
        ++counters_.out_of_order;  // all of it came before (our ACK was lost): ACK again
        send_ack(c, out);
        return true;
      }
      data = data.subspan(std::min<std::size_t>(old, data.size()));
      seq = c.rcv_nxt;
    }
    if (seq != c.rcv_nxt || c.fin_received) {
      ++counters_.out_of_order;
      send_ack(c, out);
      return true;
    }
    if (data.size() > window(c)) {
      data = data.first(window(c));
      fin = false;  // beyond the window
    }
    c.rcv_nxt += static_cast<std::uint32_t>(data.size());
    if (!data.empty()) {
      c.idle_deadline = now + options_.idle_timeout;
      if (!take_data(c, data, out)) {
        reset(c, out);
        return false;
      }
    }
    if (fin) {
      c.rcv_nxt += 1;
      c.fin_received = true;
    }
    ack_due = true;
  }
  if (c.fin_received && c.outstanding == 0 && !c.fin_wanted) {
    c.fin_wanted = true;
    c.state = State::closing;
  }
  const std::size_t before = out.packets.size();
  transmit(now, c, out);
  if (ack_due && out.packets.size() == before) send_ack(c, out);
  return !finished(c);
}

bool TcpServer::take_data(Connection& c, ByteSpan data, Actions& out) {
  c.received.insert(c.received.end(), data.begin(), data.end());
  std::size_t at = 0;
  while (c.received.size() - at >= 2) {
    const std::size_t length = load_be16(c.received.data() + at);
    if (length < kDnsHeader || length > kMaxQuerySize) {
      ++counters_.bad_length;
      return false;
    }
    if (c.received.size() - at < 2 + length) break;
    const auto first = c.received.begin() + static_cast<std::ptrdiff_t>(at + 2);
    if (c.outstanding >= options_.max_outstanding) {
      ++counters_.queries_dropped;
    } else {
      ++c.outstanding;
      ++counters_.queries;
      out.queries.push_back(Query{c.client, Bytes(first, first + static_cast<std::ptrdiff_t>(length))});
    }
    at += 2 + length;
  }
  c.received.erase(c.received.begin(), c.received.begin() + static_cast<std::ptrdiff_t>(at));
  return true;
}

void TcpServer::on_answer(Instant now, const Endpoint& client, ByteSpan wire, Actions& out) {
  const auto it = connections_.find(key_of(client));
  if (it == connections_.end()) {
    ++counters_.answers_dropped;
    return;
  }
  Connection& c = it->second;
  if (c.outstanding > 0) --c.outstanding;
  if (c.fin_wanted || wire.size() > kMaxResponseSize || c.send.size() + 2 + wire.size() > options_.max_send_buffer) {
    ++counters_.answers_dropped;
  } else {
    ++counters_.answers;
    const std::size_t at = c.send.size();
    c.send.resize(at + 2 + wire.size());
    store_be16(c.send.data() + at, static_cast<std::uint16_t>(wire.size()));
    std::copy(wire.begin(), wire.end(), c.send.begin() + static_cast<std::ptrdiff_t>(at + 2));
    c.idle_deadline = now + options_.idle_timeout;
  }
  if (c.fin_received && c.outstanding == 0 && !c.fin_wanted) {
    c.fin_wanted = true;
    c.state = State::closing;
  }
  transmit(now, c, out);
}

void TcpServer::transmit(Instant now, Connection& c, Actions& out) {
  if (c.state == State::syn_received || c.fin_sent) return;
  const std::uint32_t window_end = c.snd_una + c.snd_wnd;
  std::size_t offset = c.snd_nxt - c.snd_una;
  while (offset < c.send.size()) {
    const std::size_t room = seq_lt(c.snd_nxt, window_end) ? window_end - c.snd_nxt : 0;
    if (room == 0) break;
    const std::size_t n = std::min({static_cast<std::size_t>(c.send_mss), c.send.size() - offset, room});
    out.packets.push_back(build_segment(c.client, c.snd_nxt, c.rcv_nxt, kAck | kPsh, window(c), std::nullopt,
                                        ByteSpan(c.send.data() + offset, n)));
    c.snd_nxt += static_cast<std::uint32_t>(n);
    offset += n;
  }
  if (c.fin_wanted && offset == c.send.size()) {
    out.packets.push_back(build_segment(c.client, c.snd_nxt, c.rcv_nxt, kFin | kAck, window(c), std::nullopt, {}));
    c.snd_nxt += 1;
    c.fin_sent = true;
  }
  // Something in flight, or answers waiting on a closed window (then the timer probes it).
  if ((c.snd_nxt != c.snd_una || offset < c.send.size()) && !c.rto_deadline) c.rto_deadline = now + c.rto;
}

void TcpServer::send_ack(const Connection& c, Actions& out) const {
  out.packets.push_back(build_segment(c.client, c.snd_nxt, c.rcv_nxt, kAck, window(c), std::nullopt, {}));
}

void TcpServer::reset(Connection& c, Actions& out) {
  ++counters_.resets_sent;
  out.packets.push_back(build_segment(c.client, c.snd_nxt, c.rcv_nxt, kRst | kAck, 0, std::nullopt, {}));
}

bool TcpServer::finished(const Connection& c) const {
  // Both FINs exchanged and ours acknowledged.
  return c.fin_sent && c.fin_received && c.snd_una == c.snd_nxt;
}

void TcpServer::on_timer(Instant now, Actions& out) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& c = it->second;
    bool gone = false;
    if (c.rto_deadline && *c.rto_deadline <= now) {
      if (c.retries >= options_.max_retries) {
        ++counters_.timed_out;
        reset(c, out);
        gone = true;
      } else {
        ++c.retries;
        ++counters_.retransmits;
        c.rto *= 2;
        c.rto_deadline = now + c.rto;
        if (c.state == State::syn_received) {
          out.packets.push_back(
              build_segment(c.client, c.iss, c.rcv_nxt, kSyn | kAck, window(c), options_.mss, {}));
        } else {
          // Go back to the first unacknowledged byte and send again (a lost ACK or segment).
          c.snd_nxt = c.snd_una;
          c.fin_sent = false;
          if (c.snd_wnd == 0 && !c.send.empty()) {
            // RFC 9293 §3.8.6.1: probe a closed window with one byte.
            out.packets.push_back(build_segment(c.client, c.snd_nxt, c.rcv_nxt, kAck | kPsh, window(c),
                                                std::nullopt, ByteSpan(c.send.data(), 1)));
            c.snd_nxt += 1;
          } else {
            transmit(now, c, out);
          }
        }
      }
    }
    if (!gone && c.idle_deadline <= now) {
      if (c.state == State::syn_received || c.outstanding > 0 || c.snd_una != c.snd_nxt || !c.send.empty()) {
        // Not idle: the handshake or the answers in flight have their own timer; answers due.
        c.idle_deadline = now + options_.idle_timeout;
      } else if (c.state == State::established) {
        // RFC 7766 §6.2.3: idle connections are the server's to close.
        ++counters_.idle_closed;
        c.state = State::closing;
        c.fin_wanted = true;
        c.idle_deadline = now + options_.idle_timeout;
        transmit(now, c, out);
      } else {
        reset(c, out);  // closing and still not done after another idle period
        gone = true;
      }
    }
    if (gone || finished(c)) it = connections_.erase(it);
    else ++it;
  }
}

std::optional<Instant> TcpServer::next_deadline() const {
  std::optional<Instant> next;
  for (const auto& [key, c] : connections_) {
    if (c.rto_deadline && (!next || *c.rto_deadline < *next)) next = c.rto_deadline;
    if (!next || c.idle_deadline < *next) next = c.idle_deadline;
  }
  return next;
}

}  // namespace knit::dns
