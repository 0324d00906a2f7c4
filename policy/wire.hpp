// The rule set the coordinator pushes to one agent (the rules for traffic into it), in a
// binary form the agent decodes as hostile input: every count bounded (limits.hpp), every
// value checked, nothing trailing. Integers are unsigned LEB128 varints (as peer_codec.hpp).
//
//   rules    := 'K' 'P' 0x01 version:varint n:varint rule{n}
//   rule     := index:varint protocols:u8 name:str n:varint prefix{n} (src)
//               n:varint prefix{n} (dst) n:varint range{n} (ports)
//   str      := len:u8 bytes[len]          (printable, at most kMaxRuleNameLength)
//   prefix   := family:u8 (4|6) length:u8 address[4|16]  (no bits past the length)
//   range    := first:be16 last:be16       (first <= last)
//
// `version` is the coordinator's policy version: an agent ignores a set older than the one it
// holds. An empty set (n = 0) under a policy denies every new inbound flow; "no policy at all"
// is a different message (control::PolicyRules with no payload).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "policy/rule_set.hpp"

namespace knit::policy {

enum class WireError : std::uint8_t {
  none,
  truncated,
  bad_magic,
  too_many,      // a count over its bound
  too_big,       // over kMaxWireBytes
  bad_protocol,  // no protocol bit, or unknown bits
  bad_name,
  bad_prefix,    // family, length or host bits
  bad_range,
  trailing,      // bytes after the last rule
  empty_list,    // a rule with no source, destination or ports
};
const char* to_string(WireError error);

std::string encode_rules(std::uint64_t version, const RuleSet& rules);
WireError decode_rules(std::string_view bytes, std::uint64_t& version, RuleSet& out);

}  // namespace knit::policy
