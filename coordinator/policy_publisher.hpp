// What the coordinator pushes of the access policy: each agent gets the rules compiled for
// traffic into itself (policy/compile.hpp) as a policy_rules message, on register and again
// whenever they change for it. No I/O: the server hands in the store's settings and its peer
// view, and sends what this returns.
//
// Rules are compiled again only when the policy or what it depends on changes (a node's name,
// tags, addresses or routes), not on the frequent changes (endpoints, presence); each agent is
// sent its set only when that set differs from the one it last got, so a change goes out as a
// delta per node: the nodes it does not touch hear nothing.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "control/messages.hpp"
#include "control/peer_map.hpp"
#include "coordinator/policy_settings.hpp"
#include "coordinator/visibility.hpp"
#include "policy/document.hpp"

namespace knit::coordinator {

class PolicyPublisher {
 public:
  // Takes the stored settings; true when what agents get may have changed. A stored document
  // that does not parse (never written by `policy set`) leaves the previous one in force.
  bool set_settings(const PolicySettings& settings, std::string* why = nullptr);
  // The mesh the rules are compiled against, from the server's peer view; true when it
  // changed in a way the policy depends on.
  bool set_peers(const std::vector<const control::PeerInfo*>& peers);

  // The encoded policy_rules message for `key` when it differs from what that node was last
  // given (always after forget(key)); nullopt otherwise, or for an unknown node while a policy
  // is in force (with none, every node gets "none", known or not: O(1), no peers needed).
  std::optional<std::string> message_for(const control::NodeKey& key);
  // The node's session ended: the next session gets the rules again.
  void forget(const control::NodeKey& key) { sent_.erase(key); }

  bool in_force() const { return document_.has_value(); }
  std::uint64_t version() const { return version_; }
  // Who sees whom in the peer map under the policy (visibility.hpp), from the same compilation
  // as the rules; null while no policy is in force (everyone sees everyone). generation()
  // changes whenever the answer may have (every compilation, setting or clearing the policy),
  // so the server knows when to trim the agents' maps again.
  const Visibility* visibility();
  std::uint64_t visibility_generation();
  // The nodes who-sees-whom may differ for between the compilation of generation `from` and
  // the current one, sorted: those whose rules, addresses or carrier flag changed, and those
  // that came or went. sees(a, b) depends on nothing else, so a node not listed sees the same
  // nodes not listed as before. nullptr when that is not known (`from` is not the generation
  // just before, or the document changed): anything may differ.
  const std::vector<control::NodeKey>* visibility_changes(std::uint64_t from);

 private:
  void compile_if_needed();

  std::optional<policy::Document> document_;
  std::string text_;
  std::uint64_t version_ = 0;
  std::map<std::string, std::vector<std::string>> admin_tags_;
  std::vector<control::PeerInfo> peers_;  // only what the policy depends on
  std::string fingerprint_;
  bool stale_ = true;
  struct Compiled {
    std::string message;  // policy_rules, encoded
    std::string rules;    // the rule set without the version ("" for no policy): what is compared
  };
  std::unordered_map<control::NodeKey, Compiled, control::NodeKeyHash> compiled_;
  std::unordered_map<control::NodeKey, std::string, control::NodeKeyHash> sent_;  // Compiled::rules
  std::optional<Visibility> visibility_;
  std::uint64_t visibility_generation_ = 0;
  // What visibility depends on, per node, at the last compilation (rules, addresses, carrier),
  // and which nodes it changed for since the one before (visibility_changes).
  std::unordered_map<control::NodeKey, std::string, control::NodeKeyHash> signature_;
  std::vector<control::NodeKey> changes_;
  bool changes_known_ = false;
  bool document_changed_ = true;
};

}  // namespace knit::coordinator
