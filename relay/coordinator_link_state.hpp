// What knit-relay keeps in its state directory for its link to the coordinator:
//
//   relay.key         the relay key (X25519, the Noise static key the coordinator knows the relay
//                     by), base64 and a newline as `wg genkey` writes it, mode 0600
//   coordinator.json  where the coordinator is and its public key, from the join token:
//                       {"addresses": ["coord.example.net:7443"], "coordinator_key": "<base64>"}
//                     so a restart without --token finds it again (the token itself is not kept)
//   membership.json   the last membership and relay map the coordinator sent, so a relay
//                     restarted while the coordinator is down still admits the mesh's members:
//                       {"members": ["<node key base64>", ...],
//                        "relay_map": {"v": 1, "type": "relay_map", "relays": [...]}}
//
// Files are replaced atomically (a temporary file, then rename), mode 0600. A damaged or
// oversized file is treated as hostile input: it is refused with a reason, never trusted in part.
// The file handling is the state directory every daemon shares (base/state_dir.hpp).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "base/state_dir.hpp"
#include "control/host_port.hpp"
#include "control/messages.hpp"
#include "wg/keys.hpp"

namespace knit::relay {

inline constexpr const char* kRelayKeyFile = "relay.key";
inline constexpr const char* kCoordinatorFile = "coordinator.json";
inline constexpr const char* kMembershipFile = "membership.json";

struct CoordinatorRecord {
  std::vector<control::HostPort> addresses;  // 1..8, from the join token
  wg::PublicKey coordinator_key{};
  friend bool operator==(const CoordinatorRecord&, const CoordinatorRecord&) = default;
};

struct MembershipCache {
  std::vector<wg::PublicKey> members;  // sorted, unique
  std::vector<control::RelayInfo> relays;
  friend bool operator==(const MembershipCache&, const MembershipCache&) = default;
};

// The files' text, and back; nullopt (with why) for anything that is not a complete, valid file.
std::string encode_coordinator_record(const CoordinatorRecord& record);
std::optional<CoordinatorRecord> parse_coordinator_record(const std::string& text, std::string& why);
std::string encode_membership(const MembershipCache& cache);
std::optional<MembershipCache> parse_membership(const std::string& text, std::string& why);

// The relay's records in its state directory (path(), ensure() and the file handling are the
// shared StateDirectory's).
class LinkState : public StateDirectory {
 public:
  using StateDirectory::StateDirectory;

  // relay.key, made with rng on first use. Throws StateDirError.
  wg::PrivateKey load_or_create_key(Random& rng) const;
  // nullopt when there is no such file; a damaged one throws StateDirError.
  std::optional<CoordinatorRecord> load_coordinator() const;
  void save_coordinator(const CoordinatorRecord& record) const;  // throws StateDirError
  std::optional<MembershipCache> load_membership() const;        // as load_coordinator
  void save_membership(const MembershipCache& cache) const;      // throws StateDirError
  void forget_membership() const;                                // no error when gone

};

}  // namespace knit::relay
