#include "relay/frame.hpp"

#include <algorithm>

namespace knit::relay {
namespace {

void put_key(Bytes& out, const NodeKey& key) { out.insert(out.end(), key.begin(), key.end()); }

NodeKey get_key(const std::uint8_t* p) {
  NodeKey key;
  std::copy_n(p, kKeySize, key.begin());
  return key;
}

bool packet_ok(ByteSpan packet) { return !packet.empty() && packet.size() <= kMaxPacketSize; }

void put_u64(Bytes& out, std::uint64_t v) {
  const std::size_t at = out.size();
  out.resize(at + 8);
  store_be64(out.data() + at, v);
}

}  // namespace

std::string_view to_string(Admission admission) {
  switch (admission) {
    case Admission::ok: return "ok";
    case Admission::not_member: return "not a mesh member";
    case Admission::not_relay: return "not a relay of this mesh";
    case Admission::membership_unknown: return "the relay does not know the membership yet";
    case Admission::bad_hello: return "unsupported hello";
    case Admission::self: return "dialed itself";
  }
  return "unknown refusal";
}

std::string_view to_string(CloseReason reason) {
  switch (reason) {
    case CloseReason::removed: return "removed from the mesh";
    case CloseReason::replaced: return "replaced by a newer connection";
    case CloseReason::idle: return "idle";
    case CloseReason::shutting_down: return "relay shutting down";
  }
  return "unknown";
}

std::string_view to_string(FrameType type) {
  switch (type) {
    case FrameType::send: return "send";
    case FrameType::recv: return "recv";
    case FrameType::keepalive: return "keepalive";
    case FrameType::ping: return "ping";
    case FrameType::pong: return "pong";
    case FrameType::peer_gone: return "peer_gone";
    case FrameType::closing: return "closing";
    case FrameType::forward: return "forward";
    case FrameType::present: return "present";
    case FrameType::absent: return "absent";
  }
  return "unknown";
}

std::string_view to_string(ParseError error) {
  switch (error) {
    case ParseError::ok: return "ok";
    case ParseError::empty: return "empty";
    case ParseError::unknown_type: return "unknown type";
    case ParseError::truncated: return "truncated";
    case ParseError::trailing: return "trailing bytes";
    case ParseError::bad_packet: return "bad packet";
    case ParseError::bad_keys: return "bad key list";
    case ParseError::not_data: return "split message that is not a data frame";
  }
  return "unknown";
}

Bytes encode(const Hello& hello) {
  Bytes out{hello.version, static_cast<std::uint8_t>(hello.role)};
  if (hello.features != 0) out.push_back(hello.features);
  return out;
}

Bytes encode(const Result& result) {
  Bytes out(kResultSize);
  out[0] = static_cast<std::uint8_t>(result.status);
  store_be16(out.data() + 1, result.keepalive_s);
  if (result.features != 0) out.push_back(result.features);
  return out;
}

std::optional<Hello> parse_hello(ByteSpan payload) {
  if (payload.size() < kHelloSize) return std::nullopt;
  Hello hello;
  hello.version = payload[0];
  hello.role = static_cast<Role>(payload[1]);
  if (payload.size() > kHelloSize) hello.features = payload[kHelloSize];
  return hello;
}

std::optional<Result> parse_result(ByteSpan payload) {
  if (payload.size() < kResultSize) return std::nullopt;
  Result result;
  result.status = static_cast<Admission>(payload[0]);
  result.keepalive_s = load_be16(payload.data() + 1);
  if (payload.size() > kResultSize) result.features = payload[kResultSize];
  return result;
}

std::size_t split_head_size(FrameType type) {
  switch (type) {
    case FrameType::send:
    case FrameType::recv:
      return kDataHeadSize;
    case FrameType::forward:
      return kForwardHeadSize;
    default:
      return 0;
  }
}

ParseError parse_split_frame(ByteSpan bytes, std::size_t sealed_size, Frame& out) {
  if (bytes.empty()) return ParseError::empty;
  const std::size_t head = split_head_size(static_cast<FrameType>(bytes[0]));
  if (head == 0 || sealed_size != head) {
    out = Frame{};
    return ParseError::not_data;
  }
  return parse_frame(bytes, out);
}

ParseError parse_run(ByteSpan bytes, std::size_t sealed_size, std::size_t tails, RunFrame& out) {
  out = RunFrame{};
  if (bytes.empty()) return ParseError::empty;
  const auto type = static_cast<FrameType>(bytes[0]);
  if ((type != FrameType::send && type != FrameType::recv) || sealed_size != kDataHeadSize)
    return ParseError::not_data;
  const std::size_t trailer = 2 * tails + 1;
  if (tails == 0 || bytes.size() < kDataHeadSize + trailer || bytes.back() != tails)
    return ParseError::truncated;
  const ByteSpan packets = bytes.subspan(kDataHeadSize, bytes.size() - kDataHeadSize - trailer);
  const ByteSpan lengths = bytes.last(trailer);
  std::size_t sum = 0;
  for (std::size_t i = 0; i < tails; ++i) {
    const std::size_t length = load_be16(lengths.data() + 2 * i);
    if (length == 0 || length > kMaxPacketSize) return ParseError::bad_packet;
    sum += length;
  }
  if (sum != packets.size()) return ParseError::truncated;
  out.type = type;
  out.key = get_key(bytes.data() + 1);
  out.packets = packets;
  out.trailer = lengths;
  return ParseError::ok;
}

NodeKey Frame::key(std::size_t i) const { return get_key(keys.data() + i * kKeySize); }

ParseError parse_frame(ByteSpan bytes, Frame& out) {
  if (bytes.empty()) return ParseError::empty;
  out = Frame{};
  const std::uint8_t type = bytes[0];
  const ByteSpan body = bytes.subspan(1);
  auto fixed = [&](std::size_t size) {
    if (body.size() < size) return ParseError::truncated;
    if (body.size() > size) return ParseError::trailing;
    return ParseError::ok;
  };
  switch (static_cast<FrameType>(type)) {
    case FrameType::send:
    case FrameType::recv: {
      if (body.size() < kKeySize) return ParseError::truncated;
      out.type = static_cast<FrameType>(type);
      (out.type == FrameType::send ? out.dst : out.src) = get_key(body.data());
      out.packet = body.subspan(kKeySize);
      return packet_ok(out.packet) ? ParseError::ok : ParseError::bad_packet;
    }
    case FrameType::forward: {
      if (body.size() < 2 * kKeySize) return ParseError::truncated;
      out.type = FrameType::forward;
      out.src = get_key(body.data());
      out.dst = get_key(body.data() + kKeySize);
      out.packet = body.subspan(2 * kKeySize);
      return packet_ok(out.packet) ? ParseError::ok : ParseError::bad_packet;
    }
    case FrameType::keepalive:
      out.type = FrameType::keepalive;
      return fixed(0);
    case FrameType::ping:
    case FrameType::pong: {
      out.type = static_cast<FrameType>(type);
      const ParseError e = fixed(8);
      if (e == ParseError::ok) out.token = load_be64(body.data());
      return e;
    }
    case FrameType::peer_gone: {
      out.type = FrameType::peer_gone;
      const ParseError e = fixed(kKeySize + 1);
      if (e == ParseError::ok) {
        out.dst = get_key(body.data());
        out.reason = body[kKeySize];
      }
      return e;
    }
    case FrameType::closing: {
      out.type = FrameType::closing;
      const ParseError e = fixed(1);
      if (e == ParseError::ok) out.reason = body[0];
      return e;
    }
    case FrameType::present:
    case FrameType::absent:
      out.type = static_cast<FrameType>(type);
      if (body.empty() || body.size() % kKeySize != 0 ||
          body.size() / kKeySize > kMaxKeysPerFrame)
        return ParseError::bad_keys;
      out.keys = body;
      return ParseError::ok;
  }
  return ParseError::unknown_type;
}

bool encode_send(const NodeKey& dst, ByteSpan packet, Bytes& out) {
  out.clear();
  if (!packet_ok(packet)) return false;
  out.reserve(1 + kKeySize + packet.size());
  out.push_back(static_cast<std::uint8_t>(FrameType::send));
  put_key(out, dst);
  out.insert(out.end(), packet.begin(), packet.end());
  return true;
}

bool encode_recv(const NodeKey& src, ByteSpan packet, Bytes& out) {
  out.clear();
  if (!packet_ok(packet)) return false;
  out.reserve(1 + kKeySize + packet.size());
  out.push_back(static_cast<std::uint8_t>(FrameType::recv));
  put_key(out, src);
  out.insert(out.end(), packet.begin(), packet.end());
  return true;
}

bool encode_forward(const NodeKey& src, const NodeKey& dst, ByteSpan packet, Bytes& out) {
  out.clear();
  if (!packet_ok(packet)) return false;
  out.reserve(1 + 2 * kKeySize + packet.size());
  out.push_back(static_cast<std::uint8_t>(FrameType::forward));
  put_key(out, src);
  put_key(out, dst);
  out.insert(out.end(), packet.begin(), packet.end());
  return true;
}

void encode_keepalive(Bytes& out) {
  out.assign(1, static_cast<std::uint8_t>(FrameType::keepalive));
}

void encode_ping(std::uint64_t token, Bytes& out) {
  out.assign(1, static_cast<std::uint8_t>(FrameType::ping));
  put_u64(out, token);
}

void encode_pong(std::uint64_t token, Bytes& out) {
  out.assign(1, static_cast<std::uint8_t>(FrameType::pong));
  put_u64(out, token);
}

void encode_peer_gone(const NodeKey& key, GoneReason reason, Bytes& out) {
  out.assign(1, static_cast<std::uint8_t>(FrameType::peer_gone));
  put_key(out, key);
  out.push_back(static_cast<std::uint8_t>(reason));
}

void encode_closing(CloseReason reason, Bytes& out) {
  out = Bytes{static_cast<std::uint8_t>(FrameType::closing), static_cast<std::uint8_t>(reason)};
}

bool encode_keys(FrameType type, const std::vector<NodeKey>& keys, Bytes& out) {
  out.clear();
  if ((type != FrameType::present && type != FrameType::absent) || keys.empty() ||
      keys.size() > kMaxKeysPerFrame)
    return false;
  out.reserve(1 + keys.size() * kKeySize);
  out.push_back(static_cast<std::uint8_t>(type));
  for (const NodeKey& key : keys) put_key(out, key);
  return true;
}

std::string short_key(const NodeKey& key) { return to_base64(key).substr(0, 8); }

}  // namespace knit::relay
