// Fixed-size secret bytes that are zeroed whenever they are dropped or overwritten.
#pragma once

#include <sodium.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace knit {

template <std::size_t N>
class Secret {
 public:
  Secret() noexcept { bytes_.fill(0); }
  explicit Secret(std::span<const std::uint8_t, N> from) noexcept { assign(from); }
  Secret(const Secret& other) noexcept : bytes_(other.bytes_) {}
  Secret& operator=(const Secret& other) noexcept {
    if (this != &other) bytes_ = other.bytes_;
    return *this;
  }
  ~Secret() { wipe(); }

  void assign(std::span<const std::uint8_t, N> from) noexcept {
    for (std::size_t i = 0; i < N; ++i) bytes_[i] = from[i];
  }
  void wipe() noexcept { sodium_memzero(bytes_.data(), N); }
  bool is_zero() const noexcept { return sodium_is_zero(bytes_.data(), N) == 1; }
  // Constant-time comparison.
  bool equals(std::span<const std::uint8_t, N> other) const noexcept {
    return sodium_memcmp(bytes_.data(), other.data(), N) == 0;
  }

  std::uint8_t* data() noexcept { return bytes_.data(); }
  const std::uint8_t* data() const noexcept { return bytes_.data(); }
  static constexpr std::size_t size() noexcept { return N; }
  std::span<std::uint8_t, N> span() noexcept { return std::span<std::uint8_t, N>(bytes_); }
  std::span<const std::uint8_t, N> span() const noexcept {
    return std::span<const std::uint8_t, N>(bytes_);
  }

 private:
  std::array<std::uint8_t, N> bytes_;
};

}  // namespace knit
