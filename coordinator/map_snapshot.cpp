#include "coordinator/map_snapshot.hpp"

#include <algorithm>

#include "control/constants.hpp"

namespace knit::coordinator {

MapSnapshot::MapSnapshot(std::uint64_t version, const control::V6Base& base,
                         std::vector<control::NodeKey> keys, std::string data,
                         std::vector<std::uint32_t> offsets)
    : version_(version),
      base_(base),
      keys_(std::move(keys)),
      data_(std::move(data)),
      offsets_(std::move(offsets)) {
  // Pages by count and bytes; one (empty) page for an empty map.
  std::size_t first = 0;
  while (first < keys_.size() || pages_.empty()) {
    std::size_t last = first;
    while (last < keys_.size() && last - first < control::kMaxPeersPerMessage &&
           (last == first ||
            offsets_[last + 1] - offsets_[first] <= control::kPeerPageTargetBytes))
      ++last;
    pages_.emplace_back(first, last);
    first = last;
  }
}

std::string MapSnapshot::page_for(std::size_t i, const control::NodeKey& own,
                                  const std::vector<control::NodeKey>* only) const {
  const auto [first, last] = pages_.at(i);
  if (only != nullptr) {
    std::size_t n = 0;
    std::string entries;
    for (std::size_t k = first; k < last; ++k) {
      if (keys_[k] == own || !std::binary_search(only->begin(), only->end(), keys_[k])) continue;
      entries.append(data_, offsets_[k], offsets_[k + 1] - offsets_[k]);
      ++n;
    }
    return control::page_header(version_, i, pages_.size(), base_, n) + entries;
  }
  const auto it = std::lower_bound(keys_.begin() + static_cast<std::ptrdiff_t>(first),
                                   keys_.begin() + static_cast<std::ptrdiff_t>(last), own);
  const bool skip = it != keys_.begin() + static_cast<std::ptrdiff_t>(last) && *it == own;
  std::string out = control::page_header(version_, i, pages_.size(), base_,
                                         last - first - (skip ? 1 : 0));
  const std::size_t own_at = static_cast<std::size_t>(it - keys_.begin());
  auto append = [&](std::size_t from, std::size_t to) {
    if (from < to) out.append(data_, offsets_[from], offsets_[to] - offsets_[from]);
  };
  if (skip) {
    append(first, own_at);
    append(own_at + 1, last);
  } else {
    append(first, last);
  }
  return out;
}

}  // namespace knit::coordinator
