#include "wg/uapi.hpp"

#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

#include "base/bytes.hpp"

namespace knit::wg {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

void append_hex(std::string& out, const std::uint8_t* bytes, std::size_t size) {
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(kHexDigits[bytes[i] >> 4]);
    out.push_back(kHexDigits[bytes[i] & 0xf]);
  }
}

void append_key(std::string& out, std::string_view key, const std::uint8_t* bytes) {
  out.append(key);
  out.push_back('=');
  append_hex(out, bytes, wg::kKeySize);
  out.push_back('\n');
}

template <typename Int>
void append_number(std::string& out, std::string_view key, Int value) {
  char digits[24];
  auto result = std::to_chars(digits, digits + sizeof digits, value);
  out.append(key);
  out.push_back('=');
  out.append(digits, result.ptr);
  out.push_back('\n');
}

void append_text(std::string& out, std::string_view key, std::string_view value) {
  out.append(key);
  out.push_back('=');
  out.append(value);
  out.push_back('\n');
}

// Go's strconv.ParseUint(value, 10, bits): decimal digits only, no sign, in range.
template <typename Int>
std::optional<Int> parse_uint(std::string_view text) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  Int value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

// A 32-byte key as exactly 64 hex digits (either case), decoded straight into its destination.
bool parse_key_into(std::string_view text, std::span<std::uint8_t, wg::kKeySize> out) {
  return from_hex_into(text, out);
}

// wireguard-go: netip.ParseAddrPort. IPv6 needs brackets; an IPv4 address must not have them.
std::optional<Endpoint> parse_endpoint(std::string_view text) {
  auto endpoint = Endpoint::parse(text);
  if (!endpoint) return std::nullopt;
  bool bracketed = !text.empty() && text.front() == '[';
  if (bracketed != endpoint->address().is_v6()) return std::nullopt;
  return endpoint;
}

IpPrefix masked(const IpPrefix& prefix) {
  std::uint8_t bytes[16] = {};
  std::size_t size = prefix.address.size();
  std::memcpy(bytes, prefix.address.bytes(), size);
  for (std::size_t i = 0; i < size; ++i) {
    std::size_t first_bit = i * 8;
    if (first_bit >= prefix.length) {
      bytes[i] = 0;
    } else if (first_bit + 8 > prefix.length) {
      bytes[i] &= static_cast<std::uint8_t>(0xff << (8 - (prefix.length - first_bit)));
    }
  }
  IpAddress address = prefix.address.is_v4() ? IpAddress::v4(bytes) : IpAddress::v6(bytes);
  return IpPrefix{address, prefix.length};
}

// wireguard-go: netip.ParsePrefix. The "/bits" part is required (wireguard-go 0.0.20220316
// accepts leading zeros in it, so this does too); zones are refused.
std::optional<IpPrefix> parse_allowed_ip(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto length = parse_uint<unsigned>(text.substr(slash + 1));
  auto address = IpAddress::parse(text.substr(0, slash));
  if (!length || !address) return std::nullopt;
  if (*length > (address->is_v4() ? 32u : 128u)) return std::nullopt;
  return masked(IpPrefix{*address, static_cast<std::uint8_t>(*length)});
}

// Byte storage that never leaves copies of what passed through it behind: consumed bytes are
// wiped, and growing copies into a new block and wipes the old one.
class WipingBuffer {
 public:
  WipingBuffer() = default;
  WipingBuffer(const WipingBuffer&) = delete;
  WipingBuffer& operator=(const WipingBuffer&) = delete;
  ~WipingBuffer() { release(); }

  std::string_view view() const { return {data_.get() + begin_, end_ - begin_}; }
  std::size_t size() const { return end_ - begin_; }

  void append(std::string_view bytes) {
    if (bytes.empty()) return;
    if (capacity_ - end_ < bytes.size()) make_room(bytes.size());
    std::memcpy(data_.get() + end_, bytes.data(), bytes.size());
    end_ += bytes.size();
  }

  void consume(std::size_t count) {
    if (count == 0) return;
    sodium_memzero(data_.get() + begin_, count);
    begin_ += count;
    if (begin_ == end_) begin_ = end_ = 0;
  }

  void clear() { consume(size()); }

 private:
  void make_room(std::size_t extra) {
    std::size_t live = size();
    if (capacity_ - live >= extra) {
      // Enough space once the live bytes move to the front.
      std::memmove(data_.get(), data_.get() + begin_, live);
      sodium_memzero(data_.get() + live, end_ - live);
    } else {
      std::size_t capacity = std::max<std::size_t>({capacity_ * 2, live + extra, 1024});
      auto bigger = std::make_unique<char[]>(capacity);
      if (live > 0) std::memcpy(bigger.get(), data_.get() + begin_, live);
      release();
      data_ = std::move(bigger);
      capacity_ = capacity;
    }
    begin_ = 0;
    end_ = live;
  }

  void release() {
    if (data_) sodium_memzero(data_.get(), capacity_);
    data_.reset();
    capacity_ = begin_ = end_ = 0;
  }

  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace

std::string format_errno(int errno_value) {
  std::string out;
  append_number(out, "errno", errno_value);
  out.push_back('\n');
  return out;
}

std::string format_get(const UapiDeviceState& state) {
  // Reserve once, so the key material is never left behind by a reallocation.
  std::size_t size = 256;
  for (const auto& peer : state.peers) size += 512 + peer.allowed_ips.size() * 56;
  std::string out;
  out.reserve(size);

  if (state.private_key && !state.private_key->is_zero())
    append_key(out, "private_key", state.private_key->data());
  if (state.listen_port != 0) append_number(out, "listen_port", state.listen_port);
  if (state.fwmark != 0) append_number(out, "fwmark", state.fwmark);
  for (const auto& peer : state.peers) {
    append_key(out, "public_key", peer.public_key.data());
    append_key(out, "preshared_key", peer.preshared_key.data());
    append_text(out, "protocol_version", "1");
    if (peer.endpoint) append_text(out, "endpoint", peer.endpoint->to_string());
    append_number(out, "last_handshake_time_sec", peer.last_handshake_sec);
    append_number(out, "last_handshake_time_nsec", peer.last_handshake_nsec);
    append_number(out, "tx_bytes", peer.tx_bytes);
    append_number(out, "rx_bytes", peer.rx_bytes);
    append_number(out, "persistent_keepalive_interval", peer.persistent_keepalive_interval);
    for (const auto& prefix : peer.allowed_ips) append_text(out, "allowed_ip", prefix.to_string());
  }
  out.append("errno=0\n\n");
  return out;
}

class UapiParser::Impl {
 public:
  Event next();
  void feed(std::string_view bytes) {
    if (!fatal_) buffer_.append(bytes);
  }
  bool fatal() const { return fatal_; }
  bool idle() const { return state_ == State::operation && buffer_.size() == 0; }

 private:
  enum class State { operation, get_end, set_body, skip };
  enum class LineStatus { line, need_more, too_long };

  LineStatus take_line(std::string_view& line);
  std::optional<Event> on_line(std::string_view line);
  std::optional<Event> on_set_line(std::string_view line);
  int on_device_key(std::string_view key, std::string_view value);
  int on_peer_key(UapiPeerSet& peer, std::string_view key, std::string_view value);
  Event fail(int errno_value);
  Event fail_fatally(int errno_value);
  void end_request();

  WipingBuffer buffer_;
  std::size_t line_length_ = 0;  // length of the line handed out last, consumed on the next call
  State state_ = State::operation;
  std::size_t request_bytes_ = 0;
  std::size_t allowed_ip_count_ = 0;
  UapiSet request_;
  bool fatal_ = false;
};

UapiParser::Impl::LineStatus UapiParser::Impl::take_line(std::string_view& line) {
  std::string_view pending = buffer_.view();
  auto newline = pending.find('\n');
  if (newline == std::string_view::npos)
    return pending.size() > kUapiMaxLineBytes ? LineStatus::too_long : LineStatus::need_more;
  if (newline > kUapiMaxLineBytes) return LineStatus::too_long;
  line = pending.substr(0, newline);
  line_length_ = newline + 1;
  return LineStatus::line;
}

UapiParser::Event UapiParser::Impl::next() {
  while (!fatal_) {
    std::string_view line;
    auto status = take_line(line);
    if (status == LineStatus::need_more) break;
    if (status == LineStatus::too_long) return fail_fatally(kUapiErrorTooLarge);
    request_bytes_ += line_length_;
    if (request_bytes_ > kUapiMaxRequestBytes) return fail_fatally(kUapiErrorTooLarge);
    auto event = on_line(line);
    // The line (a view into the buffer) is dead from here on: wipe it.
    buffer_.consume(line_length_);
    if (event) return std::move(*event);
  }
  return NeedMore{};
}

std::optional<UapiParser::Event> UapiParser::Impl::on_line(std::string_view line) {
  switch (state_) {
    case State::operation:
      if (line == "get=1") {
        state_ = State::get_end;
        return std::nullopt;
      }
      if (line == "set=1") {
        state_ = State::set_body;
        return std::nullopt;
      }
      // A stray empty line is its own (malformed) request; anything else skips to one.
      if (line.empty()) {
        end_request();
        return Error{kUapiErrorInvalid};
      }
      return fail(kUapiErrorInvalid);
    case State::get_end:
      // wireguard-go: "get=1\n" must be followed by exactly "\n".
      if (!line.empty()) return fail(kUapiErrorInvalid);
      end_request();
      return Get{};
    case State::set_body:
      return on_set_line(line);
    case State::skip:
      if (line.empty()) end_request();
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<UapiParser::Event> UapiParser::Impl::on_set_line(std::string_view line) {
  if (line.empty()) {
    Set done{std::move(request_)};
    end_request();
    return done;
  }
  auto equals = line.find('=');
  if (equals == std::string_view::npos) return fail(kUapiErrorProtocol);
  std::string_view key = line.substr(0, equals);
  std::string_view value = line.substr(equals + 1);

  if (key == "public_key") {
    if (request_.peers.size() >= kUapiMaxPeers) return fail(kUapiErrorTooLarge);
    UapiPeerSet peer;
    if (!parse_key_into(value, peer.public_key)) return fail(kUapiErrorInvalid);
    request_.peers.push_back(std::move(peer));
    return std::nullopt;
  }
  int result = request_.peers.empty() ? on_device_key(key, value)
                                      : on_peer_key(request_.peers.back(), key, value);
  if (result != 0) return fail(result);
  return std::nullopt;
}

int UapiParser::Impl::on_device_key(std::string_view key, std::string_view value) {
  if (key == "private_key") {
    wg::PrivateKey private_key;
    if (!parse_key_into(value, private_key.span())) return kUapiErrorInvalid;
    request_.private_key = private_key;
  } else if (key == "listen_port") {
    auto port = parse_uint<std::uint16_t>(value);
    if (!port) return kUapiErrorInvalid;
    request_.listen_port = *port;
  } else if (key == "fwmark") {
    auto mark = parse_uint<std::uint32_t>(value);
    if (!mark) return kUapiErrorInvalid;
    request_.fwmark = *mark;
  } else if (key == "replace_peers") {
    if (value != "true") return kUapiErrorInvalid;
    request_.replace_peers = true;
  } else {
    // Includes peer keys before any public_key, as in wireguard-go.
    return kUapiErrorInvalid;
  }
  return 0;
}

int UapiParser::Impl::on_peer_key(UapiPeerSet& peer, std::string_view key,
                                  std::string_view value) {
  if (key == "remove" || key == "update_only" || key == "replace_allowed_ips") {
    if (value != "true") return kUapiErrorInvalid;
    if (key == "remove") {
      peer.remove = true;
    } else if (key == "update_only") {
      peer.update_only = true;
    } else {
      // Lines before this one in the section would have been added and then dropped.
      allowed_ip_count_ -= peer.allowed_ips.size();
      peer.allowed_ips.clear();
      peer.replace_allowed_ips = true;
    }
  } else if (key == "preshared_key") {
    wg::PresharedKey preshared_key;
    if (!parse_key_into(value, preshared_key.span())) return kUapiErrorInvalid;
    peer.preshared_key = preshared_key;
  } else if (key == "endpoint") {
    auto endpoint = parse_endpoint(value);
    if (!endpoint) return kUapiErrorInvalid;
    peer.endpoint = *endpoint;
  } else if (key == "persistent_keepalive_interval") {
    auto interval = parse_uint<std::uint16_t>(value);
    if (!interval) return kUapiErrorInvalid;
    peer.persistent_keepalive_interval = *interval;
  } else if (key == "allowed_ip") {
    if (allowed_ip_count_ >= kUapiMaxAllowedIps) return kUapiErrorTooLarge;
    auto prefix = parse_allowed_ip(value);
    if (!prefix) return kUapiErrorInvalid;
    peer.allowed_ips.push_back(*prefix);
    ++allowed_ip_count_;
  } else if (key == "protocol_version") {
    if (value != "1") return kUapiErrorInvalid;
  } else {
    return kUapiErrorInvalid;
  }
  return 0;
}

UapiParser::Event UapiParser::Impl::fail(int errno_value) {
  // The current line is consumed by the caller; skip the rest of the request.
  request_ = UapiSet{};
  allowed_ip_count_ = 0;
  state_ = State::skip;
  return Error{errno_value};
}

UapiParser::Event UapiParser::Impl::fail_fatally(int errno_value) {
  fatal_ = true;
  request_ = UapiSet{};
  buffer_.clear();
  return Error{errno_value};
}

void UapiParser::Impl::end_request() {
  request_ = UapiSet{};
  allowed_ip_count_ = 0;
  request_bytes_ = 0;
  state_ = State::operation;
}

UapiParser::UapiParser() : impl_(std::make_unique<Impl>()) {}
UapiParser::~UapiParser() = default;
UapiParser::UapiParser(UapiParser&&) noexcept = default;
UapiParser& UapiParser::operator=(UapiParser&&) noexcept = default;

void UapiParser::feed(std::string_view bytes) { impl_->feed(bytes); }
UapiParser::Event UapiParser::next() { return impl_->next(); }
bool UapiParser::fatal() const { return impl_->fatal(); }
bool UapiParser::idle() const { return impl_->idle(); }

}  // namespace knit::wg
