// The access policy as the coordinator keeps it: rows of the settings table (both stores; no
// schema change), noted as change kind 5 (StoreChange::Kind::policy; older coordinators read
// everything for it).
//
//   policy          the document's text as the admin wrote it (comments kept); absent or
//                   empty: no policy, the mesh is open
//   policy_tags     tags admins set (`nodes tag`), by node key: "KEY:web,db;KEY:ops"
//                   (keys base64). Agents never set tags: these and their token's are all.
//   policy_version  counts changes, so agents can tell a newer rule set from an older one
//
// And what the policy is compiled against: the mesh's nodes with both kinds of tags.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/records.hpp"
#include "policy/compile.hpp"

namespace knit::coordinator {

inline constexpr std::string_view kPolicyKey = "policy";
inline constexpr std::string_view kPolicyTagsKey = "policy_tags";
inline constexpr std::string_view kPolicyVersionKey = "policy_version";

struct PolicySettings {
  std::string document;  // empty: no policy
  std::map<std::string, std::vector<std::string>> admin_tags;  // node key (base64) -> tags
  std::uint64_t version = 0;
  friend bool operator==(const PolicySettings&, const PolicySettings&) = default;
};

std::string encode_admin_tags(const std::map<std::string, std::vector<std::string>>& tags);
std::map<std::string, std::vector<std::string>> parse_admin_tags(std::string_view text);
PolicySettings policy_settings_from(const std::optional<std::string>& document, const std::optional<std::string>& tags,
                                    const std::optional<std::string>& version);

// A node's tags: its token's, then those admins set.
std::vector<std::string> tags_of(const Node& node, const PolicySettings& settings);
// The mesh as the policy sees it.
policy::MeshNode mesh_node(const Node& node, const PolicySettings& settings);
policy::Mesh policy_mesh(const std::vector<Node>& nodes, const PolicySettings& settings);

}  // namespace knit::coordinator
