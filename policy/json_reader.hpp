// The policy document's JSON, with what people write when they annotate a file: `//` and
// `/* */` comments and trailing commas. nlohmann_json 3.11 (Debian's) has ignore_comments but
// no trailing commas and no positions, so a bounded pre-pass blanks comments and trailing
// commas (keeping every byte's line and column) and notes where each value starts; nlohmann's
// SAX parser then does the JSON itself into a small tree whose values carry those positions.
// Duplicate keys are refused. Bounds: limits.hpp (size, depth, value count).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace knit::policy {

struct Position {
  std::uint32_t line = 0;  // 1-based
  std::uint32_t column = 0;  // 1-based, in bytes
  friend bool operator==(const Position&, const Position&) = default;
};

struct JsonNode {
  enum class Kind : std::uint8_t { null, boolean, number, string, array, object };
  Kind kind = Kind::null;
  Position at;
  bool boolean = false;
  std::string text;                // a string's value; a number's spelling
  std::vector<JsonNode> items;     // array items, or object values
  std::vector<std::string> keys;   // object keys, keys[i] names items[i]
  std::vector<Position> key_at;

  const JsonNode* find(std::string_view key) const;
};

struct ReadError {
  Position at;
  std::string message;
  friend bool operator==(const ReadError&, const ReadError&) = default;
};

std::variant<JsonNode, ReadError> read_json(std::string_view text);

const char* kind_name(JsonNode::Kind kind);

}  // namespace knit::policy
