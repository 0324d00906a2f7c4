#include "agent/route_settings.hpp"

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "base/key_file.hpp"
#include "control/constants.hpp"
#include "control/route_rules.hpp"

namespace knit::agent {

namespace {
constexpr std::size_t kMaxFileSize = 64 * 1024;
}

std::string encode_route_settings(const RouteSettings& settings) {
  nlohmann::json routes = nlohmann::json::array();
  for (const IpPrefix& p : settings.advertise) routes.push_back(p.to_string());
  return nlohmann::json{{"advertise_routes", routes},
                        {"advertise_exit_node", settings.exit_node},
                        {"accept_routes", settings.accept},
                        {"snat_routes", settings.snat},
                        {"exit_node", settings.use_exit},
                        {"exit_node_allow_lan", settings.exit_allow_lan}}
             .dump() + "\n";
}

std::optional<RouteSettings> parse_route_settings(const std::string& text, std::string& why) {
  const auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  RouteSettings out;
  if (auto it = doc.find("advertise_routes"); it != doc.end()) {
    if (!it->is_array() || it->size() > control::kMaxRoutes) {
      why = "\"advertise_routes\" must be a list of at most 256 prefixes";
      return std::nullopt;
    }
    for (const auto& item : *it) {
      auto p = item.is_string() ? IpPrefix::parse(item.get<std::string>()) : std::nullopt;
      if (!p) {
        why = "\"advertise_routes\" holds something that is not a CIDR prefix";
        return std::nullopt;
      }
      out.advertise.push_back(*p);
    }
  }
  auto flag = [&](const char* name, bool& value) {
    auto it = doc.find(name);
    if (it == doc.end()) return true;
    if (!it->is_boolean()) {
      why = std::string("\"") + name + "\" must be true or false";
      return false;
    }
    value = it->get<bool>();
    return true;
  };
  if (!flag("advertise_exit_node", out.exit_node) || !flag("accept_routes", out.accept) ||
      !flag("exit_node_allow_lan", out.exit_allow_lan))
    return std::nullopt;
  if (!flag("snat_routes", out.snat)) return std::nullopt;
  if (auto it = doc.find("exit_node"); it != doc.end()) {
    if (!it->is_string() || it->get<std::string>().size() > control::kMaxHostnameLength) {
      why = "\"exit_node\" must be a node name or mesh IP";
      return std::nullopt;
    }
    out.use_exit = it->get<std::string>();
  }
  return out;
}

std::string advertise_problem(const std::vector<IpPrefix>& routes, const std::vector<IpPrefix>& mesh,
                              const std::vector<IpAddress>& underlay) {
  std::vector<IpPrefix> hosts;
  for (const IpAddress& a : underlay) hosts.push_back(IpPrefix{a, static_cast<std::uint8_t>(a.is_v4() ? 32 : 128)});
  for (const IpPrefix& route : routes)
    if (std::string why = control::route_problem(route, mesh, hosts); !why.empty()) return why;
  return {};
}

RouteSettings RouteSettingsStore::load() const {
  auto text = read_small_file(file_, kMaxFileSize);
  if (!text) {
    if (text.error().code == FileErrc::not_found) return {};
    throw std::runtime_error(text.error().message);
  }
  std::string why;
  auto settings = parse_route_settings(*text, why);
  if (!settings) throw std::runtime_error(file_.string() + " is damaged (" + why + ")");
  return *settings;
}

void RouteSettingsStore::save(const RouteSettings& settings) const {
  std::error_code ec;
  std::filesystem::create_directories(file_.parent_path(), ec);
  ::chmod(file_.parent_path().c_str(), 0700);
  const std::string text = encode_route_settings(settings);
  const ByteSpan bytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  if (auto failed = write_private_file(file_, bytes, /*replace=*/true)) throw std::runtime_error(failed->message);
}

}  // namespace knit::agent
