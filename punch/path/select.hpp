// Choosing among proven direct paths: by measured RTT, LAN endpoints favoured, with hysteresis.
//
//   score(path) = rtt - (lan ? kLanPreference : 0)
//   keep the current path while it is trusted, unless another trusted path is clearly better:
//     score(new) + kSwitchMinGain <= score(cur)  and  score(new) <= score(cur) * (1 - 20 %)
//   current path no longer trusted -> the best-scoring trusted path, at once (no hysteresis)
#pragma once

#include <cstddef>
#include <optional>
#include <span>

#include "base/ip.hpp"
#include "base/time.hpp"

namespace knit::punch {

// RFC 1918, RFC 3927 link-local, RFC 4193 ULA, RFC 4291 link-local: addresses that only make
// sense on one site. (100.64.0.0/10 is carrier NAT space, not a LAN.)
bool is_private_address(const IpAddress& address);

Duration path_score(Duration rtt, bool lan);
bool clearly_better(Duration candidate_score, Duration current_score);

struct PathChoiceInput {
  bool trusted = false;  // a pong within kPathTrust
  Duration rtt{};
  bool lan = false;
};

// Index of the path to use, or nullopt for none; `current` is the one in use now.
std::optional<std::size_t> choose_path(std::span<const PathChoiceInput> paths,
                                       std::optional<std::size_t> current);

}  // namespace knit::punch
