// Loads tests/vectors/stun/*.hex: '#' lines are comments (where the bytes came from), the rest
// is hex, possibly over several lines.
#pragma once

#include <fstream>
#include <string>

#include "base/bytes.hpp"

namespace knit::punch::testing {

inline Bytes stun_vector(const std::string& name) {
  std::ifstream in(std::string(KNIT_VECTORS_DIR) + "/stun/" + name + ".hex");
  std::string line, hex;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != '#') hex += line;
  auto bytes = from_hex(hex);
  return bytes ? *bytes : Bytes{};
}

}  // namespace knit::punch::testing
