#include "localapi/status.hpp"

namespace knit::localapi {

std::string_view to_string(PathKind path) {
  switch (path) {
    case PathKind::direct: return "direct";
    case PathKind::relay: return "relay";
    case PathKind::none: return "none";
  }
  return "none";
}

std::optional<PathKind> parse_path_kind(std::string_view text) {
  if (text == "direct") return PathKind::direct;
  if (text == "relay") return PathKind::relay;
  if (text == "none") return PathKind::none;
  return std::nullopt;
}

}  // namespace knit::localapi
