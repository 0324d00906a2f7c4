#include "policy/wire.hpp"

#include "policy/limits.hpp"

namespace knit::policy {
namespace {

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_prefix(std::string& out, const IpPrefix& p) {
  out.push_back(p.address.is_v4() ? 4 : 6);
  out.push_back(static_cast<char>(p.length));
  out.append(reinterpret_cast<const char*>(p.address.bytes()), p.address.size());
}

class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool byte(std::uint8_t& v) {
    if (at_ >= b_.size()) return false;
    v = static_cast<std::uint8_t>(b_[at_++]);
    return true;
  }
  bool varint(std::uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      std::uint8_t c = 0;
      if (!byte(c)) return false;
      v |= std::uint64_t{c & 0x7fu} << shift;
      if (!(c & 0x80)) return true;
    }
    return false;
  }
  bool bytes(std::size_t n, std::string_view& out) {
    if (b_.size() - at_ < n) return false;
    out = b_.substr(at_, n);
    at_ += n;
    return true;
  }
  bool done() const { return at_ == b_.size(); }

 private:
  std::string_view b_;
  std::size_t at_ = 0;
};

WireError read_prefixes(Reader& r, std::vector<IpPrefix>& out, std::size_t& total) {
  std::uint64_t n = 0;
  if (!r.varint(n)) return WireError::truncated;
  if (n == 0) return WireError::empty_list;
  if (n > kMaxWirePrefixes - total) return WireError::too_many;
  total += n;
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint8_t family = 0, length = 0;
    std::string_view address;
    if (!r.byte(family) || !r.byte(length)) return WireError::truncated;
    if (family != 4 && family != 6) return WireError::bad_prefix;
    const std::size_t size = family == 4 ? 4 : 16;
    if (length > size * 8) return WireError::bad_prefix;
    if (!r.bytes(size, address)) return WireError::truncated;
    const auto* a = reinterpret_cast<const std::uint8_t*>(address.data());
    for (std::size_t bit = length; bit < size * 8; ++bit)
      if (a[bit / 8] & (0x80 >> (bit % 8))) return WireError::bad_prefix;
    out.push_back({family == 4 ? IpAddress::v4(a) : IpAddress::v6(a), length});
  }
  return WireError::none;
}

}  // namespace

const char* to_string(WireError error) {
  switch (error) {
    case WireError::none: return "ok";
    case WireError::truncated: return "truncated";
    case WireError::bad_magic: return "bad_magic";
    case WireError::too_many: return "too_many";
    case WireError::too_big: return "too_big";
    case WireError::bad_protocol: return "bad_protocol";
    case WireError::bad_name: return "bad_name";
    case WireError::bad_prefix: return "bad_prefix";
    case WireError::bad_range: return "bad_range";
    case WireError::trailing: return "trailing";
    case WireError::empty_list: return "empty_list";
  }
  return "?";
}

std::string encode_rules(std::uint64_t version, const RuleSet& rules) {
  std::string out = "KP\x01";
  put_varint(out, version);
  put_varint(out, rules.rules().size());
  for (const CompiledRule& r : rules.rules()) {
    put_varint(out, r.rule);
    out.push_back(static_cast<char>(r.protocols));
    const std::string name = r.name.substr(0, kMaxRuleNameLength);
    out.push_back(static_cast<char>(name.size()));
    out += name;
    put_varint(out, r.src.size());
    for (const IpPrefix& p : r.src) put_prefix(out, p);
    put_varint(out, r.dst.size());
    for (const IpPrefix& p : r.dst) put_prefix(out, p);
    put_varint(out, r.ports.size());
    for (const PortRange& p : r.ports) {
      out.push_back(static_cast<char>(p.first >> 8));
      out.push_back(static_cast<char>(p.first & 0xff));
      out.push_back(static_cast<char>(p.last >> 8));
      out.push_back(static_cast<char>(p.last & 0xff));
    }
  }
  return out;
}

WireError decode_rules(std::string_view bytes, std::uint64_t& version, RuleSet& out) {
  if (bytes.size() > kMaxWireBytes) return WireError::too_big;
  if (bytes.size() < 3 || bytes.substr(0, 3) != std::string_view("KP\x01", 3)) return WireError::bad_magic;
  Reader r(bytes.substr(3));
  std::uint64_t n = 0;
  if (!r.varint(version) || !r.varint(n)) return WireError::truncated;
  if (n > kMaxWireRules) return WireError::too_many;
  std::vector<CompiledRule> rules;
  std::size_t total = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    CompiledRule c;
    std::uint64_t index = 0;
    std::uint8_t name_length = 0;
    std::string_view name;
    if (!r.varint(index) || !r.byte(c.protocols) || !r.byte(name_length)) return WireError::truncated;
    if (index > 0xffffffffu) return WireError::too_many;
    c.rule = static_cast<std::uint32_t>(index);
    if (c.protocols == 0 || (c.protocols & ~kAnyProtocol)) return WireError::bad_protocol;
    if (name_length > kMaxRuleNameLength) return WireError::bad_name;
    if (!r.bytes(name_length, name)) return WireError::truncated;
    for (char ch : name)
      if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) return WireError::bad_name;
    c.name = std::string(name);
    if (auto e = read_prefixes(r, c.src, total); e != WireError::none) return e;
    if (auto e = read_prefixes(r, c.dst, total); e != WireError::none) return e;
    std::uint64_t ranges = 0;
    if (!r.varint(ranges)) return WireError::truncated;
    if (ranges == 0) return WireError::empty_list;
    if (ranges > kMaxPortRanges) return WireError::too_many;
    for (std::uint64_t k = 0; k < ranges; ++k) {
      std::string_view b;
      if (!r.bytes(4, b)) return WireError::truncated;
      const auto* u = reinterpret_cast<const std::uint8_t*>(b.data());
      const PortRange p{static_cast<std::uint16_t>(u[0] << 8 | u[1]), static_cast<std::uint16_t>(u[2] << 8 | u[3])};
      if (p.first > p.last) return WireError::bad_range;
      c.ports.push_back(p);
    }
    rules.push_back(std::move(c));
  }
  if (!r.done()) return WireError::trailing;
  out = RuleSet(std::move(rules));
  return WireError::none;
}

}  // namespace knit::policy
