#include "punch/path/disco.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "wg/crypto.hpp"

namespace knit::punch {

static_assert(kDiscoNonceSize == crypto_box_NONCEBYTES);
static_assert(kDiscoTagSize == crypto_box_MACBYTES);
static_assert(kDiscoKeySize == crypto_box_PUBLICKEYBYTES);
static_assert(kDiscoMagic[0] > 4 && (kDiscoMagic[0] & 0xc0) != 0,
              "the magic must not look like WireGuard (1..4) or STUN (top bits 00)");

const char* to_string(DiscoError error) {
  switch (error) {
    case DiscoError::none: return "none";
    case DiscoError::not_disco: return "not_disco";
    case DiscoError::truncated: return "truncated";
    case DiscoError::too_big: return "too_big";
    case DiscoError::unknown_sender: return "unknown_sender";
    case DiscoError::bad_box: return "bad_box";
    case DiscoError::replay: return "replay";
    case DiscoError::bad_version: return "bad_version";
    case DiscoError::unknown_type: return "unknown_type";
    case DiscoError::malformed: return "malformed";
    case DiscoError::node_key_mismatch: return "node_key_mismatch";
    case DiscoError::unexpected_pong: return "unexpected_pong";
    case DiscoError::stale: return "stale";
    case DiscoError::rate_limited: return "rate_limited";
  }
  return "?";
}

bool looks_like_disco(ByteSpan packet) {
  return packet.size() >= kDiscoMagic.size() &&
         std::equal(kDiscoMagic.begin(), kDiscoMagic.end(), packet.begin());
}

std::optional<DiscoKey> disco_sender(ByteSpan packet) {
  if (!looks_like_disco(packet) || packet.size() < kDiscoHeaderSize) return std::nullopt;
  DiscoKey key{};
  std::memcpy(key.data(), packet.data() + kDiscoMagic.size(), key.size());
  return key;
}

namespace {

void put_endpoint(Bytes& out, const Endpoint& ep) {
  const IpAddress& a = ep.address();
  out.push_back(static_cast<std::uint8_t>(a.family()));
  std::uint8_t addr[16] = {};
  std::memcpy(addr, a.bytes(), a.size());
  out.insert(out.end(), addr, addr + 16);
  out.push_back(static_cast<std::uint8_t>(ep.port() >> 8));
  out.push_back(static_cast<std::uint8_t>(ep.port()));
}

// Reads one endpoint at p (kDiscoEndpointSize bytes available); false for a bad family or
// non-zero padding after an IPv4 address.
bool get_endpoint(const std::uint8_t* p, Endpoint& out) {
  IpAddress a;
  if (p[0] == 4) {
    for (int i = 5; i < 17; ++i)
      if (p[i] != 0) return false;
    a = IpAddress::v4(p + 1);
  } else if (p[0] == 6) {
    a = IpAddress::v6(p + 1);
  } else {
    return false;
  }
  out = Endpoint(a, load_be16(p + 17));
  return true;
}

}  // namespace

Bytes encode_plaintext(const DiscoMessage& m) {
  Bytes out;
  out.reserve(2 + kCallMeMaybeFixedSize + kMaxCallMeMaybeEndpoints * (1 + kDiscoEndpointSize));
  out.push_back(static_cast<std::uint8_t>(m.type));
  out.push_back(kDiscoVersion);
  switch (m.type) {
    case DiscoType::ping:
      out.insert(out.end(), m.ping.tx_id.begin(), m.ping.tx_id.end());
      out.insert(out.end(), m.ping.node_key.begin(), m.ping.node_key.end());
      out.insert(out.end(), std::min(m.ping.padding, kMaxDiscoProbePacket), std::uint8_t{0});
      break;
    case DiscoType::pong:
      out.insert(out.end(), m.pong.tx_id.begin(), m.pong.tx_id.end());
      put_endpoint(out, m.pong.observed);
      out.push_back(m.pong.padded_pings ? kPongFlagPaddedPings : 0);
      break;
    case DiscoType::call_me_maybe: {
      const CallMeMaybe& c = m.call_me_maybe;
      out.push_back(static_cast<std::uint8_t>((c.mapping_varies ? 1 : 0) | (c.active ? 2 : 0) | (c.opened ? 4 : 0) |
                                                (c.full_pings_welcome ? 8 : 0)));
      std::uint8_t epoch[8];
      store_be64(epoch, c.epoch);
      out.insert(out.end(), epoch, epoch + 8);
      // Never more than the bound, whatever the caller handed in.
      const std::size_t n = std::min(c.endpoints.size(), kMaxCallMeMaybeEndpoints);
      out.push_back(static_cast<std::uint8_t>(n));
      for (std::size_t i = 0; i < n; ++i) {
        out.push_back(static_cast<std::uint8_t>(c.endpoints[i].kind));
        put_endpoint(out, c.endpoints[i].endpoint);
      }
      break;
    }
  }
  return out;
}

DiscoError decode_plaintext(ByteSpan pt, DiscoMessage& out) {
  if (pt.size() < 2) return DiscoError::truncated;
  const std::uint8_t type = pt[0];
  // Version 0 is invalid; a later version may append fields, which this version ignores.
  if (pt[1] == 0) return DiscoError::bad_version;
  const ByteSpan body = pt.subspan(2);
  out = DiscoMessage{};
  switch (type) {
    case static_cast<std::uint8_t>(DiscoType::ping):
      if (body.size() < kPingBodySize) return DiscoError::malformed;
      out.type = DiscoType::ping;
      std::memcpy(out.ping.tx_id.data(), body.data(), 12);
      std::memcpy(out.ping.node_key.data(), body.data() + 12, 32);
      out.ping.padding = body.size() - kPingBodySize;
      return DiscoError::none;
    case static_cast<std::uint8_t>(DiscoType::pong):
      if (body.size() < kPongBodySize) return DiscoError::malformed;
      out.type = DiscoType::pong;
      std::memcpy(out.pong.tx_id.data(), body.data(), 12);
      if (!get_endpoint(body.data() + 12, out.pong.observed)) return DiscoError::malformed;
      if (body.size() > kPongBodySize) out.pong.padded_pings = (body[kPongBodySize] & kPongFlagPaddedPings) != 0;
      return DiscoError::none;
    case static_cast<std::uint8_t>(DiscoType::call_me_maybe): {
      if (body.size() < kCallMeMaybeFixedSize) return DiscoError::malformed;
      out.type = DiscoType::call_me_maybe;
      CallMeMaybe& c = out.call_me_maybe;
      c.mapping_varies = (body[0] & 1) != 0;
      c.active = (body[0] & 2) != 0;
      c.opened = (body[0] & 4) != 0;
      c.full_pings_welcome = (body[0] & 8) != 0;
      c.epoch = load_be64(body.data() + 1);
      const std::size_t n = body[9];
      if (n > kMaxCallMeMaybeEndpoints) return DiscoError::malformed;
      if (body.size() < kCallMeMaybeFixedSize + n * (1 + kDiscoEndpointSize))
        return DiscoError::malformed;
      const std::uint8_t* p = body.data() + kCallMeMaybeFixedSize;
      c.endpoints.reserve(n);
      for (std::size_t i = 0; i < n; ++i, p += 1 + kDiscoEndpointSize) {
        if (p[0] < static_cast<std::uint8_t>(CandidateKind::local) ||
            p[0] > static_cast<std::uint8_t>(CandidateKind::predicted))
          return DiscoError::malformed;
        CandidateEndpoint ce;
        ce.kind = static_cast<CandidateKind>(p[0]);
        if (!get_endpoint(p + 1, ce.endpoint)) return DiscoError::malformed;
        c.endpoints.push_back(ce);
      }
      return DiscoError::none;
    }
    default:
      return DiscoError::unknown_type;
  }
}

bool DiscoSession::init(const wg::PrivateKey& mine, const DiscoKey& mine_public,
                        const DiscoKey& theirs) {
  ready_ = false;
  replay_.reset();
  mine_public_ = mine_public;
  theirs_ = theirs;
  if (crypto_box_beforenm(shared_.data(), theirs.data(), mine.data()) != 0) {
    shared_.wipe();
    return false;
  }
  ready_ = true;
  return true;
}

Bytes DiscoSession::seal(const DiscoMessage& message, std::uint64_t counter, Random& rng) const {
  Bytes pt = encode_plaintext(message);
  Bytes out(kDiscoHeaderSize + kDiscoTagSize + pt.size());
  std::copy(kDiscoMagic.begin(), kDiscoMagic.end(), out.begin());
  std::copy(mine_public_.begin(), mine_public_.end(), out.begin() + kDiscoMagic.size());
  std::uint8_t* nonce = out.data() + kDiscoMagic.size() + kDiscoKeySize;
  store_be64(nonce, counter);
  rng.fill(std::span<std::uint8_t>(nonce + 8, kDiscoNonceSize - 8));
  crypto_box_easy_afternm(out.data() + kDiscoHeaderSize, pt.data(), pt.size(), nonce,
                          shared_.data());
  sodium_memzero(pt.data(), pt.size());
  return out;
}

DiscoError DiscoSession::open(ByteSpan packet, DiscoMessage& out) {
  if (!looks_like_disco(packet)) return DiscoError::not_disco;
  if (packet.size() < kDiscoHeaderSize + kDiscoTagSize + 2) return DiscoError::truncated;
  if (packet.size() > kMaxDiscoProbePacket) return DiscoError::too_big;
  if (!ready_ || sodium_memcmp(packet.data() + kDiscoMagic.size(), theirs_.data(), 32) != 0)
    return DiscoError::unknown_sender;
  const std::uint8_t* nonce = packet.data() + kDiscoMagic.size() + kDiscoKeySize;
  const ByteSpan boxed = packet.subspan(kDiscoHeaderSize);
  const std::size_t pt_len = boxed.size() - kDiscoTagSize;
  // On the heap: a padded probe may be kilobytes; it is one allocation per disco message.
  Bytes pt(pt_len);
  if (crypto_box_open_easy_afternm(pt.data(), boxed.data(), boxed.size(), nonce,
                                   shared_.data()) != 0)
    return DiscoError::bad_box;
  // Only an authentic packet may move the window (whitepaper §5.4.6, same reasoning).
  if (!replay_.check_and_update(load_be64(nonce))) return DiscoError::replay;
  const DiscoError e = decode_plaintext(ByteSpan(pt.data(), pt_len), out);
  sodium_memzero(pt.data(), pt_len);
  return e;
}

void generate_disco_key(wg::PrivateKey& private_key, DiscoKey& public_key, Random& rng) {
  private_key = wg::crypto::generate_private_key(rng);
  public_key = wg::crypto::public_key_of(private_key);
}

}  // namespace knit::punch
