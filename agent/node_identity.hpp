// What knitd keeps in its state directory (--state-dir, default /var/lib/knit, mode 0700):
//
//   node.key    the node key: the X25519 WireGuard private key, base64 and a newline exactly as
//               `wg genkey` writes it, mode 0600. Made on the first `knit up`, kept by `knit down`
//               so a later join keeps the node's addresses.
//   disco.key   the disco key (X25519, for sealed path probes), same format.
//   mesh.json   the mesh this node is a member of: where the coordinator is, its public key, and
//               what it assigned us, and "down": true after `knit down`. Present exactly while
//               the node is a member; a restarted knitd rejoins from it without a token (or
//               stays disconnected while it is down). `knit logout` removes it.
//
// A key file that others may read is refused (it may have leaked) with what to do about it. The
// file handling is the state directory every daemon shares (base/state_dir.hpp).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/state_dir.hpp"
#include "control/host_port.hpp"
#include "wg/keys.hpp"

namespace knit::agent {

inline constexpr const char* kNodeKeyFile = "node.key";
inline constexpr const char* kDiscoKeyFile = "disco.key";
inline constexpr const char* kMeshFile = "mesh.json";

// A state-directory problem, as one line a person can act on.
using StateError = StateDirError;

struct KeyPair {
  wg::PrivateKey private_key;  // zeroed when dropped
  wg::PublicKey public_key{};
};

struct NodeIdentity {
  KeyPair node;
  KeyPair disco;
};

// The mesh this node belongs to (mesh.json).
struct MeshRecord {
  std::vector<control::HostPort> coordinator_addresses;  // 1..8, from the join token
  wg::PublicKey coordinator_key{};
  std::string hostname;  // as registered; sent again on every rejoin
  std::string name;      // the node's name in the mesh
  IpAddress ipv4;
  IpAddress ipv6;
  IpPrefix ipv4_prefix;
  IpPrefix ipv6_prefix;
  bool down = false;  // `knit down`: a member, but disconnected until `knit up`
  friend bool operator==(const MeshRecord&, const MeshRecord&) = default;
};

// mesh.json's text, and back. parse_mesh_record returns nullopt (and says why) for anything that
// is not a complete, valid record.
std::string encode_mesh_record(const MeshRecord& record);
std::optional<MeshRecord> parse_mesh_record(const std::string& text, std::string& why);

// knitd's records in its state directory (path(), ensure() and the file handling are the
// shared StateDirectory's).
class StateDir : public StateDirectory {
 public:
  using StateDirectory::StateDirectory;

  // Loads node.key and disco.key, making either with rng when missing. Throws StateError.
  NodeIdentity load_or_create_identity(Random& rng) const;

  // The saved membership; nullopt when not joined. A damaged mesh.json throws StateError.
  std::optional<MeshRecord> load_mesh() const;
  // Replaces mesh.json atomically (mode 0600). Throws StateError.
  void save_mesh(const MeshRecord& record) const;
  // Removes mesh.json (`knit logout`); no error when it is already gone.
  void forget_mesh() const;
};

// The key in a key file; makes one (0600) with rng when the file does not exist. Throws StateError.
KeyPair load_or_create_key(const std::filesystem::path& file, Random& rng);

}  // namespace knit::agent
