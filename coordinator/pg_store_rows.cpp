#include "coordinator/pg_store_rows.hpp"

#include <algorithm>

namespace knit::coordinator {

namespace pg_rows {

namespace {
IpAddress parse_address(const std::string& text) {
  auto a = IpAddress::parse(text);
  return a ? *a : IpAddress{};
}
}  // namespace

Node read_node(const PgResult& r, int i) {
  Node n;
  n.node_key = parse_key(r.text(i, 0));
  n.disco_key = parse_key(r.text(i, 1));
  n.name = r.text(i, 2);
  n.hostname = r.text(i, 3);
  n.os = r.text(i, 4);
  n.ipv4 = parse_address(r.text(i, 5));
  n.ipv6 = parse_address(r.text(i, 6));
  n.tags = split_list(r.text(i, 7));
  n.ephemeral = r.integer(i, 8) != 0;
  n.token_id = r.text(i, 9);
  n.created_at = r.integer(i, 10);
  n.last_seen = r.optional_integer(i, 11);
  n.online = r.integer(i, 12) != 0;
  n.endpoints = split_endpoints(r.text(i, 13));
  n.home_relay = r.text(i, 14);
  n.disconnected_at = r.optional_integer(i, 15);
  return n;
}

Token read_token(const PgResult& r, int i) {
  Token t;
  t.id = r.text(i, 0);
  const auto hash = r.bytes(i, 1);
  if (hash.size() == t.secret_hash.size()) std::copy(hash.begin(), hash.end(), t.secret_hash.begin());
  t.reusable = r.integer(i, 2) != 0;
  t.ephemeral = r.integer(i, 3) != 0;
  t.relay = r.integer(i, 4) != 0;
  t.revoked = r.integer(i, 5) != 0;
  t.expires_at = r.optional_integer(i, 6);
  t.tags = split_list(r.text(i, 7));
  t.uses = static_cast<std::uint64_t>(r.integer(i, 8));
  t.created_at = r.integer(i, 9);
  return t;
}

Relay read_relay(const PgResult& r, int i) {
  Relay relay;
  relay.name = r.text(i, 0);
  relay.node_key = parse_key(r.text(i, 1));
  relay.addresses = split_list(r.text(i, 2));
  relay.stun_port = static_cast<std::uint16_t>(r.integer(i, 3));
  relay.registered_at = r.integer(i, 4);
  relay.online = r.integer(i, 6) != 0;
  relay.last_seen = r.optional_integer(i, 7);
  return relay;
}

}  // namespace pg_rows

}  // namespace knit::coordinator
