// The knit control-socket protocol (localapi/protocol.hpp): parse_request on any line, as knitd
// reads the CLI's, and parse_response, as the CLI reads knitd's. Property: what parses encodes
// to a line that parses to the same value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz/fuzz_util.hpp"
#include "localapi/protocol.hpp"

using namespace knit;
using namespace knit::localapi;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the direction, so one corpus covers both.
  const bool response = (data[0] & 1) != 0;
  const std::string_view line(reinterpret_cast<const char*>(data + 1), size - 1);
  if (!response) {
    auto parsed = parse_request(line);
    if (const auto* request = std::get_if<ControlRequest>(&parsed)) {
      const std::string encoded = encode_request(*request);
      KNIT_FUZZ_CHECK(encoded.find('\n') == std::string::npos);
      auto again = parse_request(encoded);
      const auto* request2 = std::get_if<ControlRequest>(&again);
      if (request2 == nullptr) {
        std::fprintf(stderr, "re-encoded request does not parse: %s\n%s\n",
                     std::get<ProtocolError>(again).message.c_str(), encoded.c_str());
      }
      KNIT_FUZZ_CHECK(request2 != nullptr && *request2 == *request);
    }
    return 0;
  }
  auto parsed = parse_response(line);
  if (const auto* reply = std::get_if<ControlResponse>(&parsed)) {
    const std::string encoded = encode_response(*reply);
    KNIT_FUZZ_CHECK(encoded.find('\n') == std::string::npos);
    auto again = parse_response(encoded);
    const auto* reply2 = std::get_if<ControlResponse>(&again);
    if (reply2 == nullptr) {
      std::fprintf(stderr, "re-encoded response does not parse: %s\n%s\n",
                   std::get<ProtocolError>(again).message.c_str(), encoded.c_str());
    } else if (!(*reply2 == *reply)) {
      std::fprintf(stderr, "round trip changed the response:\n%s\n%s\n", encoded.c_str(),
                   encode_response(*reply2).c_str());
    }
    KNIT_FUZZ_CHECK(reply2 != nullptr && *reply2 == *reply);
  }
  return 0;
}
