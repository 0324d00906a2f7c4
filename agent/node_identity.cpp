#include "agent/node_identity.hpp"

#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "control/constants.hpp"
#include "wg/crypto.hpp"

namespace knit::agent {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A mesh.json is a few hundred bytes; anything much bigger is not ours.
constexpr std::size_t kMaxMeshFileSize = 64 * 1024;

std::string key_text(const wg::PublicKey& key) { return to_base64(key); }

wg::PublicKey key_from_text(const std::string& text) {
  auto bytes = from_base64(text);
  if (!bytes || bytes->size() != wg::kKeySize) throw std::invalid_argument("bad key");
  wg::PublicKey key{};
  std::copy(bytes->begin(), bytes->end(), key.begin());
  return key;
}

IpAddress address_of_family(const std::string& text, bool v4) {
  auto address = IpAddress::parse(text);
  if (!address || address->is_v4() != v4) throw std::invalid_argument("bad address");
  return *address;
}

IpPrefix prefix_of_family(const std::string& text, bool v4) {
  auto prefix = IpPrefix::parse(text);
  if (!prefix || prefix->address.is_v4() != v4) throw std::invalid_argument("bad prefix");
  return *prefix;
}

}  // namespace

KeyPair load_or_create_key(const fs::path& file, Random& rng) {
  KeyPair pair;
  pair.private_key = load_or_create_key_or_throw(file, rng);
  pair.public_key = wg::crypto::public_key_of(pair.private_key);
  return pair;
}

NodeIdentity StateDir::load_or_create_identity(Random& rng) const {
  ensure();
  NodeIdentity identity;
  identity.node = agent::load_or_create_key(file(kNodeKeyFile), rng);
  identity.disco = agent::load_or_create_key(file(kDiscoKeyFile), rng);
  return identity;
}

std::optional<MeshRecord> StateDir::load_mesh() const {
  return load<MeshRecord>(kMeshFile, kMaxMeshFileSize, parse_mesh_record,
                               "remove it and join again with `knit up --token TOKEN`");
}

void StateDir::save_mesh(const MeshRecord& record) const { write(kMeshFile, encode_mesh_record(record)); }

void StateDir::forget_mesh() const { remove(kMeshFile); }

std::string encode_mesh_record(const MeshRecord& record) {
  json addresses = json::array();
  for (const auto& address : record.coordinator_addresses) addresses.push_back(address.to_string());
  json doc = {
      {"coordinator", {{"addresses", addresses}, {"public_key", key_text(record.coordinator_key)}}},
      {"hostname", record.hostname},
      {"node",
       {{"name", record.name}, {"ipv4", record.ipv4.to_string()}, {"ipv6", record.ipv6.to_string()}}},
      {"mesh",
       {{"ipv4_prefix", record.ipv4_prefix.to_string()},
        {"ipv6_prefix", record.ipv6_prefix.to_string()}}},
  };
  if (record.down) doc["down"] = true;
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::optional<MeshRecord> parse_mesh_record(const std::string& text, std::string& why) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    why = "not JSON";
    return std::nullopt;
  }
  try {
    MeshRecord record;
    const json& coordinator = doc.at("coordinator");
    for (const auto& item : coordinator.at("addresses")) {
      auto address = control::HostPort::parse(item.get<std::string>());
      if (!address) throw std::invalid_argument("bad coordinator address");
      record.coordinator_addresses.push_back(*address);
    }
    if (record.coordinator_addresses.empty() ||
        record.coordinator_addresses.size() > control::kMaxTokenAddresses)
      throw std::invalid_argument("no coordinator address");
    record.coordinator_key = key_from_text(coordinator.at("public_key").get<std::string>());
    record.hostname = doc.at("hostname").get<std::string>();
    const json& node = doc.at("node");
    record.name = node.at("name").get<std::string>();
    record.ipv4 = address_of_family(node.at("ipv4").get<std::string>(), true);
    record.ipv6 = address_of_family(node.at("ipv6").get<std::string>(), false);
    const json& mesh = doc.at("mesh");
    record.ipv4_prefix = prefix_of_family(mesh.at("ipv4_prefix").get<std::string>(), true);
    record.ipv6_prefix = prefix_of_family(mesh.at("ipv6_prefix").get<std::string>(), false);
    if (auto down = doc.find("down"); down != doc.end()) record.down = down->get<bool>();
    return record;
  } catch (const std::exception& e) {
    why = e.what();
    return std::nullopt;
  }
}

}  // namespace knit::agent
