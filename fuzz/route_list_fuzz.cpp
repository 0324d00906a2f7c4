// Route lists (control/route_rules.hpp): parse_route_list on any text, as knit-coordinator reads
// --auto-approve and the stored auto-approval rows, and route_problem on what parses. Property:
// what parses formats to text that parses to the same list; no accepted prefix has host bits.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control/route_rules.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto list = control::parse_route_list(text, /*allow_exit=*/true, error);
  if (!list) return 0;
  const std::vector<IpPrefix> mesh{*IpPrefix::parse("100.64.0.0/10")};
  for (const IpPrefix& route : list->routes) {
    const std::string why = control::route_problem(route, mesh);
    KNIT_FUZZ_CHECK(why.find("host bits") == std::string::npos);
  }
  const std::string formatted = control::format_route_list(*list);
  std::string error2;
  const auto again = control::parse_route_list(formatted, true, error2);
  KNIT_FUZZ_CHECK(again.has_value());
  KNIT_FUZZ_CHECK(again->routes == list->routes && again->exit == list->exit);
  return 0;
}
