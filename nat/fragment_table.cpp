#include "nat/fragment_table.hpp"

#include "nat/hash_index.hpp"
#include "nat/wire.hpp"

namespace knit::nat {

std::size_t FragmentTable::KeyHash::operator()(const FragmentKey& k) const {
  return static_cast<std::size_t>(hash_words((std::uint64_t{k.source} << 32) | k.destination,
                                             (std::uint64_t{k.id} << 16) |
                                                 (std::uint64_t{k.protocol} << 8) |
                                                 static_cast<std::uint8_t>(k.direction),
                                             0x6672616773ULL));
}

void FragmentTable::remember(Instant now, const FragmentKey& key, std::uint32_t source,
                             std::uint32_t destination, Verdict verdict) {
  if (capacity_ == 0) return;
  if (flows_.size() >= capacity_ && flows_.find(key) == flows_.end()) {
    expire(now);
    if (flows_.size() >= capacity_) {
      // Still full of live entries: the one closest to expiry gives way.
      auto stalest = flows_.begin();
      for (auto it = flows_.begin(); it != flows_.end(); ++it)
        if (it->second.expires < stalest->second.expires) stalest = it;
      flows_.erase(stalest);
    }
  }
  flows_[key] = FragmentTranslation{source, destination, verdict, now + kFragmentTimeout};
}

const FragmentTranslation* FragmentTable::find(Instant now, const FragmentKey& key) const {
  auto it = flows_.find(key);
  if (it == flows_.end() || it->second.expires <= now) return nullptr;
  return &it->second;
}

void FragmentTable::expire(Instant now) {
  for (auto it = flows_.begin(); it != flows_.end();) {
    if (it->second.expires <= now) {
      it = flows_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace knit::nat
