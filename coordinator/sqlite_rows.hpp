// How records are laid out in knit.db rows (schema in migrations.cpp): keys as base64 text, as
// `wg` shows them; lists as comma-separated text (tags, endpoints and addresses never contain a
// comma: they are validated before they are stored).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "coordinator/records.hpp"
#include "coordinator/sqlite_db.hpp"

namespace knit::coordinator::rows {

std::string key_text(const wg::PublicKey& key);
wg::PublicKey parse_key(std::string_view text);  // all zeros if malformed

std::string join_list(const std::vector<std::string>& items);
std::vector<std::string> split_list(std::string_view text);
std::string join_endpoints(const std::vector<Endpoint>& endpoints);
std::vector<Endpoint> split_endpoints(std::string_view text);

// SELECT lists matching read_node / read_token / read_relay.
inline constexpr std::string_view kNodeColumns =
    "node_key, disco_key, name, hostname, os, ipv4, ipv6, tags, ephemeral, COALESCE(token_id, ''), "
    "created_at, last_seen, online, endpoints, home_relay, disconnected_at";
inline constexpr std::string_view kTokenColumns =
    "id, secret_hash, reusable, ephemeral, relay, revoked, expires_at, tags, uses, created_at";
inline constexpr std::string_view kRelayColumns =
    "name, node_key, addresses, stun_port, registered_at, COALESCE(token_id, ''), online, "
    "last_seen";

Node read_node(const Statement& row);
Token read_token(const Statement& row);
// The token id is not part of Relay; read it with column_text(5).
Relay read_relay(const Statement& row);

}  // namespace knit::coordinator::rows
