#include "nat/hash_index.hpp"

namespace knit::nat {

HashIndex::HashIndex(std::size_t initial_capacity) {
  std::size_t capacity = 16;
  while (capacity < initial_capacity) capacity *= 2;
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
}

void HashIndex::place(Slot slot) {
  std::size_t i = slot.tag & mask_;
  while (slots_[i].value != kNone) i = (i + 1) & mask_;
  slots_[i] = slot;
}

void HashIndex::grow() {
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(old.size() * 2, Slot{});
  mask_ = slots_.size() - 1;
  for (const Slot& slot : old)
    if (slot.value != kNone) place(slot);
}

void HashIndex::insert(std::uint64_t hash, std::uint32_t value) {
  if ((count_ + 1) * 4 > slots_.size() * 3) grow();
  place(Slot{static_cast<std::uint32_t>(hash), value});
  ++count_;
}

bool HashIndex::erase(std::uint64_t hash, std::uint32_t value) {
  const std::uint32_t tag = static_cast<std::uint32_t>(hash);
  std::size_t i = tag & mask_;
  for (;; i = (i + 1) & mask_) {
    if (slots_[i].value == kNone) return false;
    if (slots_[i].value == value && slots_[i].tag == tag) break;
  }
  // Backward-shift deletion: pull up each later entry of the run that may live in the hole,
  // i.e. whose home slot is not cyclically inside (hole, its position].
  std::size_t hole = i;
  for (std::size_t j = (hole + 1) & mask_; slots_[j].value != kNone; j = (j + 1) & mask_) {
    const std::size_t home = slots_[j].tag & mask_;
    const bool home_after_hole = ((j - home) & mask_) < ((j - hole) & mask_);
    if (home_after_hole) continue;
    slots_[hole] = slots_[j];
    hole = j;
  }
  slots_[hole] = Slot{};
  --count_;
  return true;
}

void HashIndex::clear() {
  for (Slot& slot : slots_) slot = Slot{};
  count_ = 0;
}

}  // namespace knit::nat
