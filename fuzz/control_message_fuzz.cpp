// Control messages (control/messages.hpp): parse_message on any text, as the coordinator reads
// an agent's frames and an agent the coordinator's. Property: what parses encodes to text that
// parses to the same message (the encoder and the parser agree on every valid value).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "control/messages.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  control::ParseResult parsed = control::parse_message(text);
  if (const auto* error = std::get_if<control::ParseError>(&parsed)) {
    (void)error->describe();
    return 0;
  }
  const std::optional<control::Message> message = control::to_message(std::move(parsed));
  KNIT_FUZZ_CHECK(message.has_value());
  const std::string encoded = control::encode(*message);
  control::ParseResult again = control::parse_message(encoded);
  if (const auto* error = std::get_if<control::ParseError>(&again)) {
    std::fprintf(stderr, "re-encoded message does not parse: %s\n%s\n", error->describe().c_str(),
                 encoded.c_str());
    KNIT_FUZZ_CHECK(false);
  }
  const std::optional<control::Message> message2 = control::to_message(std::move(again));
  KNIT_FUZZ_CHECK(message2.has_value());
  if (!(*message2 == *message)) {
    std::fprintf(stderr, "round trip changed the message:\n%s\n%s\n", encoded.c_str(),
                 control::encode(*message2).c_str());
    KNIT_FUZZ_CHECK(false);
  }
  return 0;
}
