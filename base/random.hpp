// Randomness is injected into the protocol cores so tests are deterministic.
#pragma once

#include <cstdint>
#include <span>

namespace knit {

class Random {
 public:
  virtual ~Random() = default;
  virtual void fill(std::span<std::uint8_t> out) = 0;
  // Uniform in [0, bound); bound must be > 0.
  std::uint32_t uniform(std::uint32_t bound);
  std::uint64_t next_u64();
};

// Cryptographically secure: libsodium's randombytes.
class SystemRandom final : public Random {
 public:
  void fill(std::span<std::uint8_t> out) override;
};

// Deterministic, for tests and simulations only (splitmix64 stream). Never for keys in use.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(std::uint64_t seed) : state_(seed) {}
  void fill(std::span<std::uint8_t> out) override;

 private:
  std::uint64_t state_;
};

}  // namespace knit
