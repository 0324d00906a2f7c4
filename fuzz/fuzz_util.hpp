// Shared by the fuzz targets: a crash that names the property that broke, and small helpers.
// A target checks properties with KNIT_FUZZ_CHECK (never assert: NDEBUG builds keep it).
#pragma once

#include <cstdio>
#include <cstdlib>

#define KNIT_FUZZ_CHECK(cond)                                                        \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace knit::fuzz {

// Reads an input front to back: big-endian integers (0 once the input is used up) and byte
// strings. Seeds are then plain concatenations (fuzz/make_seeds.cpp writes them).
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}
  bool empty() const { return n_ == 0; }
  std::size_t remaining() const { return n_; }
  std::uint8_t u8() { return n_ == 0 ? 0 : (--n_, *p_++); }
  std::uint16_t u16() { return static_cast<std::uint16_t>((u8() << 8) | u8()); }
  std::uint32_t u32() { return (std::uint32_t{u16()} << 16) | u16(); }
  std::vector<std::uint8_t> bytes(std::size_t k) {
    k = std::min(k, n_);
    std::vector<std::uint8_t> out(p_, p_ + k);
    p_ += k;
    n_ -= k;
    return out;
  }
  std::vector<std::uint8_t> rest() { return bytes(n_); }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

// One operation of a record-driven target: op u8 | length u16 | bytes[length].
struct Record {
  std::uint8_t op = 0;
  std::vector<std::uint8_t> bytes;
};

inline Record next_record(Reader& in, std::size_t max_length) {
  Record r;
  r.op = in.u8();
  const std::size_t length = in.u16();
  r.bytes = in.bytes(std::min(length, max_length));
  return r;
}

}  // namespace knit::fuzz
