// Internal to localapi/ (protocol.cpp and status_routes.cpp): the JSON type of the control
// protocol and the field readers every decoder uses. Each reader throws std::invalid_argument
// naming the field; parse_request/parse_response turn that into a ProtocolError.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "wg/keys.hpp"

namespace knit::localapi {

// ordered: `knit status --json` lists fields in the contract's order.
using json = nlohmann::ordered_json;

namespace detail {

inline constexpr std::size_t kMaxShortText = 255;

inline const json& field(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) throw std::invalid_argument(std::string("missing field \"") + name + "\"");
  return *it;
}

inline std::string text_field(const json& object, const char* name, std::size_t max, bool required = true) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) {
    if (required) throw std::invalid_argument(std::string("missing field \"") + name + "\"");
    return {};
  }
  if (!it->is_string()) throw std::invalid_argument(std::string("\"") + name + "\" must be a string");
  const auto& text = it->get_ref<const std::string&>();
  if (text.size() > max) throw std::invalid_argument(std::string("\"") + name + "\" is too long");
  return text;
}

inline std::optional<std::string> optional_text(const json& object, const char* name, std::size_t max) {
  const json& value = field(object, name);
  if (value.is_null()) return std::nullopt;
  return text_field(object, name, max);
}

inline IpAddress address_field(const json& object, const char* name) {
  auto address = IpAddress::parse(text_field(object, name, 64));
  if (!address) throw std::invalid_argument(std::string("\"") + name + "\" is not an IP address");
  return *address;
}

inline std::optional<Endpoint> optional_endpoint(const json& object, const char* name) {
  auto text = optional_text(object, name, 64);
  if (!text) return std::nullopt;
  auto endpoint = Endpoint::parse(*text);
  if (!endpoint) throw std::invalid_argument(std::string("\"") + name + "\" is not an endpoint");
  return endpoint;
}

inline wg::PublicKey key_field(const json& object, const char* name) {
  auto bytes = from_base64(text_field(object, name, 64));
  if (!bytes || bytes->size() != wg::kKeySize)
    throw std::invalid_argument(std::string("\"") + name + "\" is not a base64 key");
  wg::PublicKey key{};
  std::copy(bytes->begin(), bytes->end(), key.begin());
  return key;
}

inline bool bool_field(const json& object, const char* name) {
  const json& value = field(object, name);
  if (!value.is_boolean()) throw std::invalid_argument(std::string("\"") + name + "\" must be true or false");
  return value.get<bool>();
}

inline std::optional<bool> optional_bool(const json& object, const char* name) {
  const json& value = field(object, name);
  if (value.is_null()) return std::nullopt;
  return bool_field(object, name);
}

inline std::uint64_t counter_field(const json& object, const char* name) {
  const json& value = field(object, name);
  if (!value.is_number_unsigned()) throw std::invalid_argument(std::string("\"") + name + "\" must be a count");
  return value.get<std::uint64_t>();
}

inline const json& object_field(const json& object, const char* name) {
  const json& value = field(object, name);
  if (!value.is_object()) throw std::invalid_argument(std::string("\"") + name + "\" must be an object");
  return value;
}

template <typename T>
inline json or_null(const std::optional<T>& value) {
  return value ? json(*value) : json(nullptr);
}

inline json endpoint_or_null(const std::optional<Endpoint>& endpoint) {
  return endpoint ? json(endpoint->to_string()) : json(nullptr);
}

}  // namespace detail
}  // namespace knit::localapi
