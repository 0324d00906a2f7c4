#include "coordinator/policy_settings.hpp"

#include <algorithm>
#include <charconv>

#include "base/bytes.hpp"

namespace knit::coordinator {

std::string encode_admin_tags(const std::map<std::string, std::vector<std::string>>& tags) {
  std::string out;
  for (const auto& [key, list] : tags) {
    if (list.empty()) continue;
    if (!out.empty()) out += ';';
    out += key + ":";  // base64 has no ':' (it may end in '=')
    for (std::size_t i = 0; i < list.size(); ++i) out += (i ? "," : "") + list[i];
  }
  return out;
}

std::map<std::string, std::vector<std::string>> parse_admin_tags(std::string_view text) {
  std::map<std::string, std::vector<std::string>> out;
  while (!text.empty()) {
    const std::size_t end = std::min(text.find(';'), text.size());
    const std::string_view item = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    const std::size_t eq = item.find(':');
    if (eq == std::string_view::npos) continue;
    std::vector<std::string>& list = out[std::string(item.substr(0, eq))];
    std::string_view tags = item.substr(eq + 1);
    while (!tags.empty()) {
      const std::size_t comma = std::min(tags.find(','), tags.size());
      if (comma > 0) list.emplace_back(tags.substr(0, comma));
      tags.remove_prefix(std::min(comma + 1, tags.size()));
    }
  }
  return out;
}

PolicySettings policy_settings_from(const std::optional<std::string>& document, const std::optional<std::string>& tags,
                                    const std::optional<std::string>& version) {
  PolicySettings s;
  if (document) s.document = *document;
  if (tags) s.admin_tags = parse_admin_tags(*tags);
  if (version) std::from_chars(version->data(), version->data() + version->size(), s.version);
  return s;
}

std::vector<std::string> tags_of(const Node& node, const PolicySettings& settings) {
  std::vector<std::string> tags = node.tags;
  if (auto it = settings.admin_tags.find(to_base64(node.node_key)); it != settings.admin_tags.end())
    for (const std::string& t : it->second)
      if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  return tags;
}

policy::MeshNode mesh_node(const Node& node, const PolicySettings& settings) {
  policy::MeshNode n;
  n.name = node.name;
  n.tags = tags_of(node, settings);
  n.addresses = {node.ipv4, node.ipv6};
  return n;
}

policy::Mesh policy_mesh(const std::vector<Node>& nodes, const PolicySettings& settings) {
  policy::Mesh mesh;
  for (const Node& node : nodes) mesh.nodes.push_back(mesh_node(node, settings));
  return mesh;
}

}  // namespace knit::coordinator
