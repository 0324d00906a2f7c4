#include "agent/forward_store.hpp"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "base/key_file.hpp"

namespace knit::agent {

namespace {

using json = nlohmann::ordered_json;
constexpr std::size_t kMaxFileSize = 256 * 1024;

}  // namespace

std::string encode_filter_settings(const FilterSettings& settings) {
  json forwards = json::array();
  for (const localapi::ForwardRule& rule : settings.forwards) {
    forwards.push_back({{"proto", std::string(to_string(rule.protocol))},
                        {"mesh_port", rule.mesh_port},
                        {"target", rule.target.to_string()}});
  }
  json doc = {{"shields_up", settings.shields_up}, {"forwards", forwards}};
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::optional<FilterSettings> parse_filter_settings(const std::string& text, std::string& why) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  FilterSettings settings;
  if (auto it = doc.find("shields_up"); it != doc.end()) {
    if (!it->is_boolean()) {
      why = "\"shields_up\" must be true or false";
      return std::nullopt;
    }
    settings.shields_up = it->get<bool>();
  }
  auto list = doc.find("forwards");
  if (list == doc.end()) return settings;
  if (!list->is_array() || list->size() > kMaxForwards) {
    why = "\"forwards\" must be a list of at most " + std::to_string(kMaxForwards);
    return std::nullopt;
  }
  for (const json& item : *list) {
    auto proto = item.is_object() && item.contains("proto") && item["proto"].is_string()
                     ? localapi::parse_forward_protocol(item["proto"].get<std::string>())
                     : std::nullopt;
    const bool port_ok = item.is_object() && item.contains("mesh_port") &&
                         item["mesh_port"].is_number_unsigned() &&
                         item["mesh_port"].get<std::uint64_t>() <= 65535;
    auto target = item.is_object() && item.contains("target") && item["target"].is_string()
                      ? Endpoint::parse(item["target"].get<std::string>())
                      : std::nullopt;
    if (!proto || !port_ok || !target) {
      why = "a forward needs \"proto\" (tcp|udp), \"mesh_port\" and \"target\" (HOST:PORT)";
      return std::nullopt;
    }
    localapi::ForwardRule rule{*proto, static_cast<std::uint16_t>(item["mesh_port"].get<std::uint64_t>()), *target};
    if (std::string bad = localapi::check_forward_rule(rule); !bad.empty()) {
      why = "forward " + std::string(to_string(rule.protocol)) + "/" + std::to_string(rule.mesh_port) +
            ": " + bad;
      return std::nullopt;
    }
    settings.forwards.push_back(rule);
  }
  return settings;
}

FilterSettings ForwardStore::load() const {
  auto text = read_small_file(file_, kMaxFileSize);
  if (!text) {
    if (text.error().code == FileErrc::not_found) return {};
    throw std::runtime_error(text.error().message);
  }
  std::string why;
  auto settings = parse_filter_settings(*text, why);
  if (!settings) throw std::runtime_error(file_.string() + " is damaged (" + why + ")");
  return *settings;
}

void ForwardStore::save(const FilterSettings& settings) const {
  std::error_code ec;
  std::filesystem::create_directories(file_.parent_path(), ec);
  ::chmod(file_.parent_path().c_str(), 0700);
  const std::string text = encode_filter_settings(settings);
  const ByteSpan bytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  if (auto failed = write_private_file(file_, bytes, /*replace=*/true))
    throw std::runtime_error(failed->message);
}

}  // namespace knit::agent
