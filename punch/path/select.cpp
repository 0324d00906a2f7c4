#include "punch/path/select.hpp"

#include "punch/path/constants.hpp"

namespace knit::punch {

bool is_private_address(const IpAddress& a) {
  const std::uint8_t* b = a.bytes();
  if (a.is_v4()) {
    return b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
           (b[0] == 169 && b[1] == 254);
  }
  return (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
}

Duration path_score(Duration rtt, bool lan) { return lan ? rtt - kLanPreference : rtt; }

bool clearly_better(Duration candidate, Duration current) {
  return candidate + kSwitchMinGain <= current &&
         candidate.count() * 100 <= current.count() * (100 - std::int64_t{kSwitchMinPercent});
}

std::optional<std::size_t> choose_path(std::span<const PathChoiceInput> paths,
                                       std::optional<std::size_t> current) {
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    if (!paths[i].trusted) continue;
    if (!best || path_score(paths[i].rtt, paths[i].lan) <
                     path_score(paths[*best].rtt, paths[*best].lan))
      best = i;
  }
  if (!current || *current >= paths.size() || !paths[*current].trusted) return best;
  const PathChoiceInput& cur = paths[*current];
  if (best && *best != *current &&
      clearly_better(path_score(paths[*best].rtt, paths[*best].lan), path_score(cur.rtt, cur.lan)))
    return best;
  return current;
}

}  // namespace knit::punch
