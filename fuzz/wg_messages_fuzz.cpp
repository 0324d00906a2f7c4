// WireGuard messages (wg/messages.hpp, wg/handshake.hpp, wg/cookie.hpp): any datagram, as the
// first code that sees one. classify() and the index readers; then, by type, what a device
// does before it knows the sender: mac1/mac2 checks, consume_initiation with the device's key,
// and a peer's consume_response and cookie-reply decryption. Keys are set up once; only an
// input of an initiation's exact size pays for X25519.
// An initiation whose mac1 is wrong (nearly every input) gets the right mac1 computed here, as
// an initiator that knows the device's public key would, so its content reaches
// consume_initiation. Properties: classify agrees with the sizes of constants.hpp; the index
// readers stay in bounds; a mac1 computed by CookieMacs passes CookieChecker.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "base/random.hpp"
#include "fuzz/fuzz_util.hpp"
#include "wg/constants.hpp"
#include "wg/cookie.hpp"
#include "wg/crypto.hpp"
#include "wg/handshake.hpp"
#include "wg/messages.hpp"

using namespace knit;
using namespace knit::wg;

namespace {

struct Keys {
  LocalIdentity local;
  PublicKey remote{};
  CookieChecker checker;
  Handshake handshake;  // toward `remote`, with an initiation in flight
  CookieMacs macs;
  CookieMacs toward_local;  // what an initiator to `local` computes: lets inputs past mac1
  Keys() {
    SeededRandom rng(5);
    local.set(crypto::generate_private_key(rng));
    LocalIdentity other;
    other.set(crypto::generate_private_key(rng));
    remote = other.public_key;
    checker.configure(local.public_key);
    handshake.configure(local, remote, PresharedKey{});
    std::array<std::uint8_t, kInitiationSize> init{};
    KNIT_FUZZ_CHECK(handshake.create_initiation(init, 7, WallTime{}, rng));
    macs.configure(remote);
    macs.add_macs(init, Instant{});
    toward_local.configure(local.public_key);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Keys keys;
  const ByteSpan msg(data, size);
  const Classified kind = classify(msg);
  const Endpoint source{*IpAddress::parse("192.0.2.9"), 9};
  const Instant now{std::chrono::seconds(10)};
  switch (kind) {
    case Classified::initiation: {
      KNIT_FUZZ_CHECK(size == kInitiationSize);
      (void)sender_index(msg);
      std::array<std::uint8_t, kInitiationSize> copy;
      std::copy(data, data + size, copy.begin());
      if (keys.checker.check(msg, source, now, true) == MacCheck::invalid_mac) {
        // The device drops it here. Give it the right mac1 (as a real initiator would) so the
        // rest of the input reaches the handshake.
        keys.toward_local.add_macs(copy, now);
        KNIT_FUZZ_CHECK(keys.checker.check(copy, source, now, false) != MacCheck::invalid_mac);
      }
      ConsumedInitiation consumed;
      (void)consume_initiation(keys.local, copy, consumed);
      break;
    }
    case Classified::response: {
      KNIT_FUZZ_CHECK(size == kResponseSize);
      (void)sender_index(msg);
      (void)receiver_index(msg);
      (void)keys.checker.check(msg, source, now, true);
      // Decrypting needs the in-flight handshake; a failure must leave it untouched.
      const HandshakeError e =
          keys.handshake.consume_response(std::span<const std::uint8_t, kResponseSize>(data, size));
      (void)e;
      break;
    }
    case Classified::cookie_reply:
      KNIT_FUZZ_CHECK(size == kCookieReplySize);
      (void)receiver_index(msg);
      (void)keys.macs.consume_reply(std::span<const std::uint8_t, kCookieReplySize>(data, size), now);
      break;
    case Classified::data:
      KNIT_FUZZ_CHECK(size >= kMinDataSize && size <= kMaxDatagramSize);
      (void)receiver_index(msg);
      (void)data_counter(msg);
      break;
    default:
      (void)sender_index(msg);
      (void)receiver_index(msg);
      (void)data_counter(msg);
      break;
  }
  return 0;
}
