// The Internet checksum every layer shares (base/checksum.hpp), against RFC 1071's worked
// example and a plain 16-bit-word reference sum.
#include <gtest/gtest.h>

#include <random>

#include "base/checksum.hpp"

namespace knit {
namespace {

// The definition, word by word, with an end-around carry after each addition.
std::uint16_t reference_fold(ByteSpan data) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < data.size(); i += 2) {
    const std::uint32_t word =
        (std::uint32_t{data[i]} << 8) | (i + 1 < data.size() ? data[i + 1] : 0u);
    sum += word;
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<std::uint16_t>(sum);
}

TEST(Checksum, Rfc1071Example) {
  // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
  const Bytes words = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(checksum_fold(checksum_accumulate(words)), 0xddf2);
  EXPECT_EQ(internet_checksum(words), static_cast<std::uint16_t>(~0xddf2));
}

TEST(Checksum, OddLastBytePadsWithZero) {
  const Bytes odd = {0x12, 0x34, 0x56};
  EXPECT_EQ(checksum_fold(checksum_accumulate(odd)), 0x1234 + 0x5600);
  EXPECT_EQ(checksum_fold(checksum_accumulate({})), 0);
}

TEST(Checksum, AgreesWithTheWordByWordSumOnRandomData) {
  std::mt19937 rng(1071);
  for (int round = 0; round < 500; ++round) {
    Bytes data(rng() % 1600);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    if (round % 7 == 0) std::fill(data.begin(), data.end(), 0xff);  // carries everywhere
    EXPECT_EQ(checksum_fold(checksum_accumulate(data)), reference_fold(data)) << data.size();
  }
}

TEST(Checksum, SuperPacketSizesAndEveryAlignmentAgree) {
  // The word loop's carries (all 0xff, up to a 64 KiB super-packet) and each start address
  // modulo 8, since the data is read as unaligned native words.
  std::mt19937 rng(8);
  Bytes storage(65535 + 8);
  for (std::size_t size : {std::size_t{15}, std::size_t{16}, std::size_t{17}, std::size_t{24}, std::size_t{65535}}) {
    for (std::size_t shift = 0; shift < 8; ++shift) {
      const bool ones = shift % 2 == 0;
      for (auto& b : storage) b = ones ? 0xff : static_cast<std::uint8_t>(rng());
      const ByteSpan data(storage.data() + shift, size);
      EXPECT_EQ(checksum_fold(checksum_accumulate(data)), reference_fold(data)) << size << " " << shift;
    }
  }
}

TEST(Checksum, ChainedChunksAtEvenOffsetsEqualTheWhole) {
  std::mt19937 rng(1624);
  for (int round = 0; round < 200; ++round) {
    Bytes data(2 + rng() % 1500);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    const std::size_t cut = (rng() % data.size()) & ~std::size_t{1};  // an even offset
    const ByteSpan all(data);
    const std::uint64_t chained =
        checksum_accumulate(all.subspan(cut), checksum_accumulate(all.first(cut)));
    EXPECT_EQ(checksum_fold(chained), checksum_fold(checksum_accumulate(all)));
  }
}

TEST(Checksum, AValidPacketSumsToZero) {
  Bytes header = {0x45, 0x00, 0x00, 0x54, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01,
                  0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02};
  const std::uint16_t field = internet_checksum(header);
  store_be16(header.data() + 10, field);
  EXPECT_EQ(internet_checksum(header), 0);
}

}  // namespace
}  // namespace knit
