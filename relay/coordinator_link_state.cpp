#include "relay/coordinator_link_state.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "control/constants.hpp"

namespace knit::relay {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxCoordinatorFileSize = 64 * 1024;
// Every member's key (kMaxPeers of them, 47 bytes each) and a full relay map fit.
constexpr std::size_t kMaxMembershipFileSize = std::size_t{8} << 20;

std::optional<wg::PublicKey> key_from_text(const json& value) {
  if (!value.is_string()) return std::nullopt;
  const auto bytes = from_base64(value.get<std::string>());
  if (!bytes || bytes->size() != wg::kKeySize) return std::nullopt;
  wg::PublicKey key{};
  std::copy(bytes->begin(), bytes->end(), key.begin());
  if (std::all_of(key.begin(), key.end(), [](std::uint8_t b) { return b == 0; })) return std::nullopt;
  return key;
}

std::optional<json> parse_object(const std::string& text, std::string& why) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  return root;
}

// What to do about a damaged file.
constexpr std::string_view kDamagedAdvice = "remove it and start knit-relay with --token again";

}  // namespace

std::string encode_coordinator_record(const CoordinatorRecord& record) {
  json out = json::object();
  json addresses = json::array();
  for (const auto& address : record.addresses) addresses.push_back(address.to_string());
  out["addresses"] = std::move(addresses);
  out["coordinator_key"] = to_base64(record.coordinator_key);
  return out.dump(2) + "\n";
}

std::optional<CoordinatorRecord> parse_coordinator_record(const std::string& text,
                                                          std::string& why) {
  auto root = parse_object(text, why);
  if (!root) return std::nullopt;
  CoordinatorRecord record;
  const auto addresses = root->find("addresses");
  if (addresses == root->end() || !addresses->is_array() || addresses->empty() ||
      addresses->size() > control::kMaxTokenAddresses) {
    why = "addresses: 1 to 8 HOST:PORT expected";
    return std::nullopt;
  }
  for (const auto& value : *addresses) {
    auto address = value.is_string() ? control::HostPort::parse(value.get<std::string>())
                                     : std::nullopt;
    if (!address) {
      why = "addresses: not HOST:PORT";
      return std::nullopt;
    }
    record.addresses.push_back(*address);
  }
  const auto key = root->find("coordinator_key");
  auto parsed = key == root->end() ? std::nullopt : key_from_text(*key);
  if (!parsed) {
    why = "coordinator_key: not a base64 key";
    return std::nullopt;
  }
  record.coordinator_key = *parsed;
  return record;
}

std::string encode_membership(const MembershipCache& cache) {
  json out = json::object();
  json members = json::array();
  for (const auto& key : cache.members) members.push_back(to_base64(key));
  out["members"] = std::move(members);
  // The relay map as the coordinator's message, so one parser checks it either way.
  out["relay_map"] = json::parse(control::encode(control::RelayMap{cache.relays}));
  return out.dump() + "\n";
}

std::optional<MembershipCache> parse_membership(const std::string& text, std::string& why) {
  auto root = parse_object(text, why);
  if (!root) return std::nullopt;
  MembershipCache cache;
  const auto members = root->find("members");
  if (members == root->end() || !members->is_array() || members->size() > control::kMaxPeers) {
    why = "members: a list of at most " + std::to_string(control::kMaxPeers) + " keys expected";
    return std::nullopt;
  }
  for (const auto& value : *members) {
    auto key = key_from_text(value);
    if (!key) {
      why = "members: not a base64 key";
      return std::nullopt;
    }
    cache.members.push_back(*key);
  }
  std::sort(cache.members.begin(), cache.members.end());
  cache.members.erase(std::unique(cache.members.begin(), cache.members.end()), cache.members.end());
  const auto relay_map = root->find("relay_map");
  if (relay_map == root->end()) {
    why = "relay_map: missing";
    return std::nullopt;
  }
  auto parsed = control::parse_message(relay_map->dump());
  auto* map = std::get_if<control::RelayMap>(&parsed);
  if (map == nullptr) {
    auto* error = std::get_if<control::ParseError>(&parsed);
    why = "relay_map: " + (error ? error->describe() : std::string("not a relay map"));
    return std::nullopt;
  }
  cache.relays = std::move(map->relays);
  return cache;
}

wg::PrivateKey LinkState::load_or_create_key(Random& rng) const {
  return StateDirectory::load_or_create_key(kRelayKeyFile, rng);
}

std::optional<CoordinatorRecord> LinkState::load_coordinator() const {
  return load<CoordinatorRecord>(kCoordinatorFile, kMaxCoordinatorFileSize,
                                      parse_coordinator_record, kDamagedAdvice);
}

void LinkState::save_coordinator(const CoordinatorRecord& record) const {
  write(kCoordinatorFile, encode_coordinator_record(record));
}

std::optional<MembershipCache> LinkState::load_membership() const {
  return load<MembershipCache>(kMembershipFile, kMaxMembershipFileSize, parse_membership,
                                    kDamagedAdvice);
}

void LinkState::save_membership(const MembershipCache& cache) const {
  write(kMembershipFile, encode_membership(cache));
}

void LinkState::forget_membership() const {
  try {
    remove(kMembershipFile);
  } catch (const StateDirError&) {
    // Unreadable or not ours to remove: the next start finds out and says so.
  }
}

}  // namespace knit::relay
