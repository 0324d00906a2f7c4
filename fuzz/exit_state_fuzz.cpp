// libFuzzer: an exit node's state file (agent/exit_plan.hpp: exit-host.json, the sysctls an
// earlier knitd changed), as the next knitd reads it before writing those values back.
// Properties: only rp_filter knobs under net/ipv4/conf/ with a previous value of 0, 1 or 2 are
// ever accepted (never a path or value someone else chose), and what parses encodes to a file
// that parses to the same records.
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/exit_plan.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto records = agent::parse_exit_state(text);
  for (const agent::SysctlRecord& r : records) {
    KNIT_FUZZ_CHECK(r.key.rfind("net/ipv4/conf/", 0) == 0);
    KNIT_FUZZ_CHECK(r.key.find("..") == std::string::npos);
    KNIT_FUZZ_CHECK(r.previous == "0" || r.previous == "1" || r.previous == "2");
  }
  KNIT_FUZZ_CHECK(agent::parse_exit_state(agent::encode_exit_state(records)) == records);
  return 0;
}
