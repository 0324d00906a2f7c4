// The subnet router's state file (agent/snat_plan.hpp: snat-host.json, the sysctls an earlier
// knitd found), as the next knitd reads it before writing those values back. Properties: only
// the keys knitd itself writes are ever accepted (never a path someone else chose), and what
// parses encodes to a file that parses to the same values.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/snat_plan.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto state = agent::parse_snat_state(text);
  if (!state) return 0;
  for (const auto& [key, value] : *state) {
    KNIT_FUZZ_CHECK(key.find("..") == std::string::npos);
    KNIT_FUZZ_CHECK(key == agent::kReservedPortsKey || key.rfind("net/ipv4/conf/", 0) == 0);
  }
  auto again = agent::parse_snat_state(agent::encode_snat_state(*state));
  KNIT_FUZZ_CHECK(again.has_value());
  std::sort(state->begin(), state->end());
  std::sort(again->begin(), again->end());
  KNIT_FUZZ_CHECK(*again == *state);
  return 0;
}
