// How the admin CLI shows records: aligned tables and times for people, JSON for scripts.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "coordinator/records.hpp"

namespace knit::coordinator {

// RFC 3339 in UTC: "2024-05-01T12:00:00Z".
std::string format_time(UnixSeconds t);
// "never", "now" (within a minute), "5m ago", "3h12m ago", "2d4h ago".
std::string format_ago(std::optional<UnixSeconds> t, UnixSeconds now);
// "never", "expired", "in 45m", "in 6d23h".
std::string format_expiry(std::optional<UnixSeconds> t, UnixSeconds now);

// Columns padded to their widest cell, two spaces apart, no trailing spaces.
std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows);

std::string nodes_table(const std::vector<Node>& nodes, UnixSeconds now);
std::string tokens_table(const std::vector<Token>& tokens, UnixSeconds now);
std::string relays_table(const std::vector<Relay>& relays, UnixSeconds now);

// Arrays of objects, one per record; times as RFC 3339 strings (null when unknown).
std::string nodes_json(const std::vector<Node>& nodes);
std::string relays_json(const std::vector<Relay>& relays);

}  // namespace knit::coordinator
