#include "coordinator/sqlite_rows.hpp"

#include <algorithm>

#include "base/bytes.hpp"

namespace knit::coordinator::rows {

std::string key_text(const wg::PublicKey& key) { return to_base64(key); }

wg::PublicKey parse_key(std::string_view text) {
  wg::PublicKey key{};
  auto bytes = from_base64(text);
  if (bytes && bytes->size() == key.size()) std::copy(bytes->begin(), bytes->end(), key.begin());
  return key;
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out.push_back(',');
    out += item;
  }
  return out;
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::string join_endpoints(const std::vector<Endpoint>& endpoints) {
  std::vector<std::string> items;
  for (const auto& e : endpoints) items.push_back(e.to_string());
  return join_list(items);
}

std::vector<Endpoint> split_endpoints(std::string_view text) {
  std::vector<Endpoint> out;
  for (const auto& item : split_list(text))
    if (auto e = Endpoint::parse(item)) out.push_back(*e);
  return out;
}

namespace {
IpAddress parse_address(const std::string& text) {
  auto a = IpAddress::parse(text);
  return a ? *a : IpAddress{};
}
}  // namespace

Node read_node(const Statement& row) {
  Node n;
  n.node_key = parse_key(row.column_text(0));
  n.disco_key = parse_key(row.column_text(1));
  n.name = row.column_text(2);
  n.hostname = row.column_text(3);
  n.os = row.column_text(4);
  n.ipv4 = parse_address(row.column_text(5));
  n.ipv6 = parse_address(row.column_text(6));
  n.tags = split_list(row.column_text(7));
  n.ephemeral = row.column_int(8) != 0;
  n.token_id = row.column_text(9);
  n.created_at = row.column_int(10);
  n.last_seen = row.column_optional_int(11);
  n.online = row.column_int(12) != 0;
  n.endpoints = split_endpoints(row.column_text(13));
  n.home_relay = row.column_text(14);
  n.disconnected_at = row.column_optional_int(15);
  return n;
}

Token read_token(const Statement& row) {
  Token t;
  t.id = row.column_text(0);
  auto hash = row.column_blob(1);
  if (hash.size() == t.secret_hash.size())
    std::copy(hash.begin(), hash.end(), t.secret_hash.begin());
  t.reusable = row.column_int(2) != 0;
  t.ephemeral = row.column_int(3) != 0;
  t.relay = row.column_int(4) != 0;
  t.revoked = row.column_int(5) != 0;
  t.expires_at = row.column_optional_int(6);
  t.tags = split_list(row.column_text(7));
  t.uses = static_cast<std::uint64_t>(row.column_int(8));
  t.created_at = row.column_int(9);
  return t;
}

Relay read_relay(const Statement& row) {
  Relay r;
  r.name = row.column_text(0);
  r.node_key = parse_key(row.column_text(1));
  r.addresses = split_list(row.column_text(2));
  r.stun_port = static_cast<std::uint16_t>(row.column_int(3));
  r.registered_at = row.column_int(4);
  r.online = row.column_int(6) != 0;
  r.last_seen = row.column_optional_int(7);
  return r;
}

}  // namespace knit::coordinator::rows
