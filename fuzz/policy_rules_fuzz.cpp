// The rule sets an agent receives (policy/wire.hpp) as hostile bytes. Properties: what decodes
// re-encodes to a form that decodes to the same set, and the matcher answers on it.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.hpp"
#include "policy/wire.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::uint64_t version = 0;
  policy::RuleSet set;
  if (policy::decode_rules(bytes, version, set) != policy::WireError::none) return 0;
  std::uint64_t again_version = 0;
  policy::RuleSet again;
  KNIT_FUZZ_CHECK(policy::decode_rules(policy::encode_rules(version, set), again_version, again) ==
                  policy::WireError::none);
  KNIT_FUZZ_CHECK(again == set && again_version == version);
  const policy::FlowKey flows[] = {
      {*IpAddress::parse("100.64.0.1"), *IpAddress::parse("100.64.0.2"), 6, 22},
      {*IpAddress::parse("fd7a::1"), *IpAddress::parse("fd7a::2"), 58, 0},
  };
  for (const policy::FlowKey& f : flows) {
    const auto m = set.match(f);
    KNIT_FUZZ_CHECK(!m || *m < set.rules().size());
  }
  return 0;
}
