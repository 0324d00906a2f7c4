// Disco (punch/path/disco.hpp): what any host can send to knitd's UDP socket or through the
// relay. Sessions for two disco key pairs are set up once (X25519 only at start-up); then each
// input drives one of three paths:
//   byte 0 = 0: the input is a packet for DiscoSession::open (as if from the wire);
//   byte 0 = 1: the input is a plaintext, sealed here with the peer's shared key and a fresh
//               counter (so it gets past the box), then opened: the body parser behind the box;
//   byte 0 = 2: the input is a plaintext for decode_plaintext directly.
// Properties: a plaintext that decodes re-encodes to a plaintext that decodes to the same
// message; a message the peer seals opens to itself; the replay window refuses a second copy.
#include <sodium.h>

#include <cstddef>
#include <cstdint>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "fuzz/fuzz_util.hpp"
#include "punch/path/disco.hpp"

using namespace knit;
using namespace knit::punch;

namespace {

struct Pair {
  SeededRandom rng{42};
  wg::PrivateKey a_key, b_key;
  DiscoKey a_pub{}, b_pub{};
  DiscoSession a_from_b;  // A opens what B sends
  DiscoSession b_to_a;    // B seals for A
  Secret<32> shared;      // B's crypto_box key toward A, to seal arbitrary plaintexts
  std::uint64_t counter = 1;
  Pair() {
    generate_disco_key(a_key, a_pub, rng);
    generate_disco_key(b_key, b_pub, rng);
    KNIT_FUZZ_CHECK(a_from_b.init(a_key, a_pub, b_pub));
    KNIT_FUZZ_CHECK(b_to_a.init(b_key, b_pub, a_pub));
    KNIT_FUZZ_CHECK(crypto_box_beforenm(shared.data(), a_pub.data(), b_key.data()) == 0);
  }
};

bool same(const DiscoMessage& x, const DiscoMessage& y) {
  if (x.type != y.type) return false;
  switch (x.type) {
    case DiscoType::ping:
      return x.ping.tx_id == y.ping.tx_id && x.ping.node_key == y.ping.node_key &&
             x.ping.padding == y.ping.padding;
    case DiscoType::pong:
      return x.pong.tx_id == y.pong.tx_id && x.pong.observed == y.pong.observed &&
             x.pong.padded_pings == y.pong.padded_pings;
    case DiscoType::call_me_maybe:
      return x.call_me_maybe.mapping_varies == y.call_me_maybe.mapping_varies &&
             x.call_me_maybe.active == y.call_me_maybe.active &&
             x.call_me_maybe.epoch == y.call_me_maybe.epoch &&
             x.call_me_maybe.endpoints == y.call_me_maybe.endpoints;
  }
  return false;
}

void check_round_trip(const DiscoMessage& m, Pair& pair) {
  const Bytes plain = encode_plaintext(m);
  DiscoMessage again;
  KNIT_FUZZ_CHECK(decode_plaintext(plain, again) == DiscoError::none);
  KNIT_FUZZ_CHECK(same(m, again));
  const Bytes sealed = pair.b_to_a.seal(m, pair.counter++, pair.rng);
  KNIT_FUZZ_CHECK(looks_like_disco(sealed));
  KNIT_FUZZ_CHECK(disco_sender(sealed) == pair.b_pub);
  DiscoMessage opened;
  KNIT_FUZZ_CHECK(pair.a_from_b.open(sealed, opened) == DiscoError::none);
  KNIT_FUZZ_CHECK(same(m, opened));
  KNIT_FUZZ_CHECK(pair.a_from_b.open(sealed, opened) == DiscoError::replay);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Pair pair;
  if (size == 0) return 0;
  const ByteSpan input(data + 1, size - 1);
  DiscoMessage m;
  switch (data[0] % 3) {
    case 0: {
      (void)disco_sender(input);
      const DiscoError e = pair.a_from_b.open(input, m);
      (void)to_string(e);
      if (e == DiscoError::none) check_round_trip(m, pair);
      break;
    }
    case 1: {
      if (input.size() > kMaxDiscoProbePacket - kDiscoHeaderSize - kDiscoTagSize) return 0;
      Bytes packet(kDiscoHeaderSize + kDiscoTagSize + input.size());
      std::copy(kDiscoMagic.begin(), kDiscoMagic.end(), packet.begin());
      std::copy(pair.b_pub.begin(), pair.b_pub.end(), packet.begin() + kDiscoMagic.size());
      std::uint8_t* nonce = packet.data() + kDiscoMagic.size() + kDiscoKeySize;
      store_be64(nonce, pair.counter++);
      pair.rng.fill(std::span<std::uint8_t>(nonce + 8, kDiscoNonceSize - 8));
      crypto_box_easy_afternm(packet.data() + kDiscoHeaderSize, input.data(), input.size(), nonce,
                              pair.shared.data());
      const DiscoError e = pair.a_from_b.open(packet, m);
      DiscoMessage direct;
      const DiscoError d = decode_plaintext(input, direct);
      if (input.size() < 2) {
        KNIT_FUZZ_CHECK(e == DiscoError::truncated);
      } else {
        KNIT_FUZZ_CHECK(e == d);  // the box adds nothing but authentication
      }
      if (e == DiscoError::none) check_round_trip(m, pair);
      break;
    }
    default: {
      const DiscoError e = decode_plaintext(input, m);
      if (e == DiscoError::none) check_round_trip(m, pair);
      break;
    }
  }
  return 0;
}
