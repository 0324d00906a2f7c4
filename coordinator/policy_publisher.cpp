#include "coordinator/policy_publisher.hpp"

#include <algorithm>

#include "base/bytes.hpp"
#include "policy/compile.hpp"
#include "policy/wire.hpp"

namespace knit::coordinator {

bool PolicyPublisher::set_settings(const PolicySettings& settings, std::string* why) {
  if (settings.document == text_ && settings.admin_tags == admin_tags_) {
    version_ = settings.version;
    return false;
  }
  std::optional<policy::Document> document;
  if (!settings.document.empty()) {
    auto parsed = policy::parse_document(settings.document);
    if (auto* e = std::get_if<policy::PolicyError>(&parsed)) {
      if (why) *why = "the stored policy does not parse (" + e->describe() + "); the previous one stays";
      return false;
    }
    document = std::move(std::get<policy::Document>(parsed));
  }
  document_ = std::move(document);
  text_ = settings.document;
  admin_tags_ = settings.admin_tags;
  version_ = settings.version;
  stale_ = true;
  document_changed_ = true;
  return true;
}

bool PolicyPublisher::set_peers(const std::vector<const control::PeerInfo*>& peers) {
  // What compilation reads of each peer, in key order: name, tags, addresses, routes.
  std::vector<const control::PeerInfo*> sorted = peers;
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->node_key < b->node_key; });
  std::string fingerprint;
  for (const control::PeerInfo* p : sorted) {
    fingerprint.append(reinterpret_cast<const char*>(p->node_key.data()), p->node_key.size());
    fingerprint += p->name + '\0' + p->ipv4.to_string() + '\0' + p->ipv6.to_string() + '\0';
    for (const std::string& t : p->tags) fingerprint += t + ',';
    fingerprint += '\0';
    for (const IpPrefix& r : p->routes) fingerprint += r.to_string() + ',';
    fingerprint += '\n';
  }
  if (fingerprint == fingerprint_) return false;
  fingerprint_ = std::move(fingerprint);
  peers_.clear();
  for (const control::PeerInfo* p : sorted) {
    control::PeerInfo copy;
    copy.name = p->name;
    copy.node_key = p->node_key;
    copy.ipv4 = p->ipv4;
    copy.ipv6 = p->ipv6;
    copy.tags = p->tags;
    copy.routes = p->routes;
    peers_.push_back(std::move(copy));
  }
  stale_ = true;
  return true;
}

void PolicyPublisher::compile_if_needed() {
  if (!stale_) return;
  stale_ = false;
  compiled_.clear();
  ++visibility_generation_;
  changes_known_ = false;
  changes_.clear();
  if (!document_) {
    signature_.clear();
    document_changed_ = true;
    visibility_.reset();
    for (const control::PeerInfo& p : peers_) compiled_[p.node_key] = {control::encode(control::PolicyRules{}), {}};
    return;
  }
  policy::Mesh mesh;
  for (const control::PeerInfo& p : peers_) {
    policy::MeshNode n;
    n.name = p.name;
    n.tags = p.tags;
    if (auto it = admin_tags_.find(to_base64(p.node_key)); it != admin_tags_.end())
      for (const std::string& t : it->second)
        if (std::find(n.tags.begin(), n.tags.end(), t) == n.tags.end()) n.tags.push_back(t);
    n.addresses = {p.ipv4, p.ipv6};
    n.routes = p.routes;
    mesh.nodes.push_back(std::move(n));
  }
  std::vector<policy::RuleSet> sets;
  sets.reserve(peers_.size());
  for (std::size_t i = 0; i < peers_.size(); ++i) {
    const policy::RuleSet& set = sets.emplace_back(policy::compile_for(*document_, mesh, mesh.nodes[i]));
    // Compared without the version: a change that leaves this node's rules alone sends nothing.
    compiled_[peers_[i].node_key] = {control::encode(control::PolicyRules{true, policy::encode_rules(version_, set)}),
                                     policy::encode_rules(0, set)};
  }
  std::vector<Visibility::Node> nodes;
  nodes.reserve(peers_.size());
  for (std::size_t i = 0; i < peers_.size(); ++i)
    nodes.push_back({peers_[i].node_key, peers_[i].ipv4, peers_[i].ipv6, !peers_[i].routes.empty(), &sets[i]});
  visibility_ = Visibility::build(nodes);
  // Which nodes visibility may have changed for (visibility.hpp: sees(a, b) reads a's and b's
  // rules, addresses and carrier flag, nothing else), against the compilation before.
  std::unordered_map<control::NodeKey, std::string, control::NodeKeyHash> signature;
  signature.reserve(peers_.size());
  for (const control::PeerInfo& p : peers_) {
    std::string s = compiled_[p.node_key].rules;
    s += '\0';
    s.append(reinterpret_cast<const char*>(p.ipv4.bytes()), p.ipv4.is_v4() ? 4 : 16);
    s.append(reinterpret_cast<const char*>(p.ipv6.bytes()), p.ipv6.is_v6() ? 16 : 4);
    s += p.routes.empty() ? '0' : '1';
    auto old = signature_.find(p.node_key);
    if (old == signature_.end() || old->second != s) changes_.push_back(p.node_key);
    signature.emplace(p.node_key, std::move(s));
  }
  for (const auto& [key, s] : signature_)
    if (signature.count(key) == 0) changes_.push_back(key);  // gone
  std::sort(changes_.begin(), changes_.end());
  signature_ = std::move(signature);
  changes_known_ = !document_changed_;
  document_changed_ = false;
}

const std::vector<control::NodeKey>* PolicyPublisher::visibility_changes(std::uint64_t from) {
  compile_if_needed();
  if (!changes_known_ || !document_ || from + 1 != visibility_generation_) return nullptr;
  return &changes_;
}

const Visibility* PolicyPublisher::visibility() {
  if (!document_) return nullptr;
  compile_if_needed();
  return visibility_ ? &*visibility_ : nullptr;
}

std::uint64_t PolicyPublisher::visibility_generation() {
  compile_if_needed();
  return visibility_generation_;
}

std::optional<std::string> PolicyPublisher::message_for(const control::NodeKey& key) {
  if (!document_) {
    // No policy: the same "none" for every node, known or not, and no peers needed for it (the
    // server does not hand them in then: set_peers is O(N) and would run at every publish).
    static const std::string none = control::encode(control::PolicyRules{});
    auto [sent, fresh] = sent_.try_emplace(key);
    if (!fresh && sent->second.empty()) return std::nullopt;
    sent->second.clear();
    return none;
  }
  compile_if_needed();
  const auto it = compiled_.find(key);
  if (it == compiled_.end()) return std::nullopt;
  auto sent = sent_.find(key);
  if (sent != sent_.end() && sent->second == it->second.rules) return std::nullopt;
  sent_[key] = it->second.rules;
  return it->second.message;
}

}  // namespace knit::coordinator
