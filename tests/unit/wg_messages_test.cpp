// classify() over a numbered table of good, malformed, truncated and oversized datagrams of
// every type, then sweeps of every size and every type byte: each gets its verdict, never a
// crash (run under ASan to see any read past the end).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "wg/cookie.hpp"
#include "wg/crypto.hpp"
#include "wg/handshake.hpp"
#include "wg/messages.hpp"

namespace knit::wg {
namespace {

// A datagram of `size` bytes with type byte `type` (when it has a byte 0), zero reserved
// bytes and 0x5a filler after them.
Bytes datagram(std::size_t size, std::uint8_t type) {
  Bytes d(size, 0x5a);
  if (size > 0) d[0] = type;
  for (std::size_t i = 1; i < 4 && i < size; ++i) d[i] = 0;
  return d;
}

Bytes with(Bytes d, std::size_t index, std::uint8_t value) {
  d[index] = value;
  return d;
}

struct Case {
  int number;
  const char* what;
  Bytes datagram;
  Classified want;
};

std::vector<Case> table() {
  using C = Classified;
  return {
      {1, "empty", Bytes{}, C::too_short},
      {2, "1 byte, type 1", Bytes{1}, C::too_short},
      {3, "1 byte, type 4", Bytes{4}, C::too_short},
      {4, "2 bytes", Bytes{4, 0}, C::too_short},
      {5, "3 bytes", Bytes{1, 0, 0}, C::too_short},
      {6, "header only, type 1", datagram(4, 1), C::bad_size},
      {7, "header only, type 4", datagram(4, 4), C::bad_size},
      {8, "initiation", datagram(148, 1), C::initiation},
      {9, "initiation - 1", datagram(147, 1), C::bad_size},
      {10, "initiation + 1", datagram(149, 1), C::bad_size},
      {11, "initiation with a response's size", datagram(92, 1), C::bad_size},
      {12, "response", datagram(92, 2), C::response},
      {13, "response - 1", datagram(91, 2), C::bad_size},
      {14, "response + 1", datagram(93, 2), C::bad_size},
      {15, "response with an initiation's size", datagram(148, 2), C::bad_size},
      {16, "cookie reply", datagram(64, 3), C::cookie_reply},
      {17, "cookie reply - 1", datagram(63, 3), C::bad_size},
      {18, "cookie reply + 1", datagram(65, 3), C::bad_size},
      {19, "keepalive", datagram(32, 4), C::data},
      {20, "data one byte short of a keepalive", datagram(31, 4), C::bad_size},
      {21, "data header only", datagram(16, 4), C::bad_size},
      {22, "data, 1 byte of payload", datagram(33, 4), C::data},
      {23, "data, full 1420-byte MTU packet", datagram(16 + 1424 + 16, 4), C::data},
      {24, "data at the largest datagram", datagram(kMaxDatagramSize, 4), C::data},
      {25, "data past the largest datagram", datagram(kMaxDatagramSize + 1, 4), C::bad_size},
      {26, "initiation, reserved byte 1 set", with(datagram(148, 1), 1, 1), C::bad_reserved},
      {27, "response, reserved byte 2 set", with(datagram(92, 2), 2, 0x80), C::bad_reserved},
      {28, "cookie, reserved byte 3 set", with(datagram(64, 3), 3, 0xff), C::bad_reserved},
      {29, "data, reserved byte 1 set", with(datagram(32, 4), 1, 1), C::bad_reserved},
      {30, "reserved set and wrong size", with(datagram(10, 4), 3, 1), C::bad_reserved},
      {31, "type 0", datagram(148, 0), C::unknown_type},
      {32, "type 5", datagram(32, 5), C::unknown_type},
      {33, "type 255", datagram(64, 255), C::unknown_type},
      {34, "type byte 0, a nonzero byte 3", Bytes{0, 0, 0, 1}, C::unknown_type},
      {35, "unknown type with reserved bytes set", Bytes{9, 9, 9, 9}, C::unknown_type},
      {36, "4 bytes of type 4", datagram(4, 4), C::bad_size},
  };
}

TEST(Classify, NumberedTable) {
  for (const Case& c : table()) {
    EXPECT_EQ(classify(c.datagram), c.want) << "case " << c.number << ": " << c.what;
  }
}

TEST(Classify, EverySizeAroundEveryBoundary) {
  struct Type {
    std::uint8_t type;
    std::size_t exact;  // 0 for data
  };
  for (const Type t : {Type{1, kInitiationSize}, Type{2, kResponseSize},
                       Type{3, kCookieReplySize}, Type{4, 0}}) {
    for (std::size_t size = 0; size <= 200; ++size) {
      const Bytes d = datagram(size, t.type);
      Classified want;
      if (size < 4) {
        want = Classified::too_short;
      } else if (t.exact != 0) {
        want = size == t.exact ? static_cast<Classified>(t.type - 1) : Classified::bad_size;
      } else {
        want = size >= kMinDataSize ? Classified::data : Classified::bad_size;
      }
      EXPECT_EQ(classify(d), want) << "type " << int{t.type} << " size " << size;
    }
  }
}

TEST(Classify, EveryUnknownTypeAtEverySize) {
  for (int type = 0; type < 256; ++type) {
    if (type >= 1 && type <= 4) continue;
    for (std::size_t size : {4u, 5u, 31u, 32u, 33u, 63u, 64u, 65u, 91u, 92u, 93u, 147u, 148u,
                             149u, 1500u}) {
      EXPECT_EQ(classify(datagram(size, static_cast<std::uint8_t>(type))),
                Classified::unknown_type)
          << "type " << type << " size " << size;
    }
  }
}

TEST(Classify, EveryNonzeroReservedByte) {
  for (std::uint8_t type = 1; type <= 4; ++type) {
    const std::size_t size = type == 1 ? 148 : type == 2 ? 92 : type == 3 ? 64 : 32;
    for (std::size_t index = 1; index < 4; ++index) {
      for (int value = 1; value < 256; ++value) {
        EXPECT_EQ(classify(with(datagram(size, type), index, static_cast<std::uint8_t>(value))),
                  Classified::bad_reserved);
      }
    }
  }
}

TEST(Fields, IndicesAndCounterAreLittleEndian) {
  Bytes init = datagram(148, 1);
  store_le32(init.data() + 4, 0xdeadbeef);
  EXPECT_EQ(sender_index(init), 0xdeadbeefu);
  EXPECT_EQ(receiver_index(init), 0u);  // an initiation has none

  Bytes resp = datagram(92, 2);
  store_le32(resp.data() + 4, 0x01020304);
  store_le32(resp.data() + 8, 0x0a0b0c0d);
  EXPECT_EQ(sender_index(resp), 0x01020304u);
  EXPECT_EQ(receiver_index(resp), 0x0a0b0c0du);

  Bytes cookie = datagram(64, 3);
  store_le32(cookie.data() + 4, 77);
  EXPECT_EQ(receiver_index(cookie), 77u);
  EXPECT_EQ(sender_index(cookie), 0u);

  Bytes data = datagram(32, 4);
  store_le32(data.data() + 4, 0xcafef00d);
  store_le64(data.data() + 8, 0x1122334455667788ULL);
  EXPECT_EQ(receiver_index(data), 0xcafef00du);
  EXPECT_EQ(data_counter(data), 0x1122334455667788ULL);
  EXPECT_EQ(data[8], 0x88);  // least significant byte first on the wire
  EXPECT_EQ(data_counter(resp), 0u);
}

TEST(Fields, ShortInputsReadAsZeroNotPastTheEnd) {
  for (std::size_t size = 0; size < 16; ++size) {
    for (std::uint8_t type = 0; type <= 5; ++type) {
      const Bytes d = datagram(size, type);
      EXPECT_EQ(data_counter(d), 0u);
      if (size < 8) {
        EXPECT_EQ(sender_index(d), 0u);
        EXPECT_EQ(receiver_index(d), 0u);
      }
      if (size < 12 && type == 2) {
        EXPECT_EQ(receiver_index(d), 0u);
      }
    }
  }
}

// Random datagrams, mostly shaped like real ones, through the whole receive path of the
// handshake core: classified, mac-checked, consumed. Every one is refused; none crashes.
TEST(ReceivePath, RandomDatagramsAreRefusedNeverCrash) {
  SeededRandom rng(31337);
  LocalIdentity me;
  me.set(crypto::generate_private_key(rng));
  LocalIdentity peer;
  peer.set(crypto::generate_private_key(rng));
  Handshake handshake;
  handshake.configure(me, peer.public_key, PresharedKey{});
  std::array<std::uint8_t, kInitiationSize> mine{};
  ASSERT_TRUE(handshake.create_initiation(mine, 1, WallTime{}, rng));
  CookieChecker checker;
  checker.configure(me.public_key);
  CookieMacs macs;
  macs.configure(peer.public_key);
  macs.add_macs(mine, Instant{});
  const Endpoint source(IpAddress::v4(0x0a000001), 51820);

  const std::size_t sizes[] = {0, 1, 3, 4, 31, 32, 64, 92, 148, 149, 1500};
  for (int i = 0; i < 4000; ++i) {
    Bytes d(sizes[rng.uniform(std::size(sizes))]);
    rng.fill(d);
    if (!d.empty() && rng.uniform(4) != 0) d[0] = static_cast<std::uint8_t>(1 + rng.uniform(4));
    for (std::size_t j = 1; j < 4 && j < d.size(); ++j) {
      if (rng.uniform(8) != 0) d[j] = 0;
    }
    switch (classify(d)) {
      case Classified::initiation: {
        EXPECT_EQ(checker.check(d, source, Instant{}, true), MacCheck::invalid_mac);
        ConsumedInitiation out;
        const auto err = consume_initiation(
            me, std::span<const std::uint8_t, kInitiationSize>(d.data(), kInitiationSize), out);
        EXPECT_NE(err, HandshakeError::ok);
        break;
      }
      case Classified::response:
        EXPECT_EQ(checker.check(d, source, Instant{}, true), MacCheck::invalid_mac);
        EXPECT_NE(handshake.consume_response(
                      std::span<const std::uint8_t, kResponseSize>(d.data(), kResponseSize)),
                  HandshakeError::ok);
        break;
      case Classified::cookie_reply:
        EXPECT_EQ(macs.consume_reply(
                      std::span<const std::uint8_t, kCookieReplySize>(d.data(), kCookieReplySize),
                      Instant{}),
                  CookieMacs::ReplyResult::decrypt_failed);
        break;
      case Classified::data:
        (void)receiver_index(d);
        (void)data_counter(d);
        break;
      default:
        (void)sender_index(d);
        (void)receiver_index(d);
        (void)data_counter(d);
        break;
    }
  }
  EXPECT_EQ(handshake.state(), Handshake::State::created_initiation);  // still waiting
}

}  // namespace
}  // namespace knit::wg
