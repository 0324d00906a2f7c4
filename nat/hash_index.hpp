// An open-addressing hash index from a key to a 32-bit slot number in some caller-owned array
// (the session or mapping slab). It stores no keys: the caller hashes the key and confirms a
// candidate by comparing the key stored in its own slab, so one index costs 8 bytes a slot.
//
//   slots_: [ tag | value ][ tag | value ][ empty ][ tag | value ] ...   (power of two)
//             tag = low 32 bits of the key's hash; home slot = tag & mask; linear probing.
//
// Deletion shifts later entries of the probe run back (no tombstones), so lookups never slow
// down as entries come and go. The table doubles at 3/4 load: inserts of new entries may
// allocate; lookups and erases never do.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace knit::nat {

class HashIndex {
 public:
  static constexpr std::uint32_t kNone = 0xffffffffu;

  explicit HashIndex(std::size_t initial_capacity = 64);

  // The value of the first entry with this hash whose key `matches(value)`, or kNone.
  template <class Matches>
  std::uint32_t find(std::uint64_t hash, Matches&& matches) const {
    const std::uint32_t tag = static_cast<std::uint32_t>(hash);
    for (std::size_t i = tag & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.value == kNone) return kNone;
      if (slot.tag == tag && matches(slot.value)) return slot.value;
    }
  }

  // Adds an entry; the caller has checked that its key is absent.
  void insert(std::uint64_t hash, std::uint32_t value);
  // Removes the entry with this hash and value; false if there is none.
  bool erase(std::uint64_t hash, std::uint32_t value);
  void clear();

  std::size_t size() const { return count_; }
  std::size_t capacity() const { return slots_.size(); }
  std::size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }

 private:
  struct Slot {
    std::uint32_t tag = 0;
    std::uint32_t value = kNone;
  };
  void grow();
  void place(Slot slot);

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t count_ = 0;
};

// The 64-bit finaliser of MurmurHash3: every input bit affects every output bit.
inline std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// Mixes key words with a secret salt, so remote senders cannot aim many keys at one probe
// run (the table is keyed by addresses and ports an attacker chooses).
inline std::uint64_t hash_words(std::uint64_t a, std::uint64_t b, std::uint64_t salt) {
  return mix64(mix64(a ^ salt) ^ std::rotl(b, 29) ^ (salt >> 7));
}

}  // namespace knit::nat
