#include "coordinator/admin_format.hpp"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "coordinator/tokens.hpp"

namespace knit::coordinator {

namespace {

// At most two units, rounded down: "45s", "12m", "3h12m", "6d23h".
std::string span_text(UnixSeconds seconds) {
  if (seconds < 60) return std::to_string(seconds) + "s";
  auto two = [](UnixSeconds big, const char* big_unit, UnixSeconds small, const char* small_unit) {
    return std::to_string(big) + big_unit + (small ? std::to_string(small) + small_unit : "");
  };
  if (seconds < 3600) return std::to_string(seconds / 60) + "m";
  if (seconds < 86400) return two(seconds / 3600, "h", seconds % 3600 / 60, "m");
  return two(seconds / 86400, "d", seconds % 86400 / 3600, "h");
}

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

nlohmann::json time_json(std::optional<UnixSeconds> t) {
  if (!t) return nullptr;
  return format_time(*t);
}

}  // namespace

std::string format_time(UnixSeconds t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  if (::gmtime_r(&tt, &tm) == nullptr) return std::to_string(t);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string format_ago(std::optional<UnixSeconds> t, UnixSeconds now) {
  if (!t) return "never";
  UnixSeconds age = now - *t;
  if (age < 60) return "now";
  return span_text(age) + " ago";
}

std::string format_expiry(std::optional<UnixSeconds> t, UnixSeconds now) {
  if (!t) return "never";
  if (now >= *t) return "expired";
  return "in " + span_text(*t - now);
}

std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(header.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i)
      widths[i] = std::max(widths[i], row[i].size());
  };
  measure(header);
  for (const auto& row : rows) measure(row);
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  emit(header);
  for (const auto& row : rows) emit(row);
  return out;
}

std::string nodes_table(const std::vector<Node>& nodes, UnixSeconds now) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : nodes)
    rows.push_back({n.name, n.ipv4.to_string(), n.ipv6.to_string(), n.online ? "yes" : "no",
                    n.online ? "now" : format_ago(n.last_seen, now), n.os.empty() ? "-" : n.os,
                    n.tags.empty() ? "-" : join(n.tags, ",")});
  return render_table({"NAME", "IPV4", "IPV6", "ONLINE", "LAST SEEN", "OS", "TAGS"}, rows);
}

std::string tokens_table(const std::vector<Token>& tokens, UnixSeconds now) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : tokens)
    rows.push_back({t.id, token_kind(t), t.tags.empty() ? "-" : join(t.tags, ","),
                    std::to_string(t.uses), format_expiry(t.expires_at, now),
                    t.revoked ? "yes" : "no"});
  return render_table({"ID", "KIND", "TAGS", "USES", "EXPIRES", "REVOKED"}, rows);
}

std::string relays_table(const std::vector<Relay>& relays, UnixSeconds now) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : relays)
    rows.push_back({r.name, join(r.addresses, ","),
                    r.stun_port == 0 ? "-" : std::to_string(r.stun_port),
                    r.online ? "yes" : "no", r.online ? "now" : format_ago(r.last_seen, now),
                    to_base64(r.node_key), format_ago(r.registered_at, now)});
  return render_table(
      {"NAME", "ADDRESSES", "STUN", "ONLINE", "LAST SEEN", "NODE KEY", "REGISTERED"}, rows);
}

std::string nodes_json(const std::vector<Node>& nodes) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& n : nodes) {
    nlohmann::json endpoints = nlohmann::json::array();
    for (const auto& e : n.endpoints) endpoints.push_back(e.to_string());
    out.push_back({{"name", n.name},
                   {"hostname", n.hostname},
                   {"ipv4", n.ipv4.to_string()},
                   {"ipv6", n.ipv6.to_string()},
                   {"online", n.online},
                   {"last_seen", time_json(n.last_seen)},
                   {"os", n.os},
                   {"tags", n.tags},
                   {"ephemeral", n.ephemeral},
                   {"node_key", to_base64(n.node_key)},
                   {"endpoints", endpoints},
                   {"home_relay", n.home_relay},
                   {"created_at", format_time(n.created_at)}});
  }
  return out.dump(2) + "\n";
}

std::string relays_json(const std::vector<Relay>& relays) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : relays)
    out.push_back({{"name", r.name},
                   {"node_key", to_base64(r.node_key)},
                   {"addresses", r.addresses},
                   {"stun_port", r.stun_port},
                   {"online", r.online},
                   {"last_seen", time_json(r.last_seen)},
                   {"registered_at", format_time(r.registered_at)}});
  return out.dump(2) + "\n";
}

}  // namespace knit::coordinator
