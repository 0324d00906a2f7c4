// Pointing the host at the mesh resolver without fighting it (docs/ARCHITECTURE.md, "Names").
//
//   systemd-resolved running (resolvectl present, /run/systemd/resolve exists):
//     per-link DNS on the TUN: `resolvectl dns knit0 100.100.100.100 ...`, routing domains
//     `resolvectl domain knit0 ~knit.internal ~corp.example`, `default-route false`: only mesh
//     and split names come to knitd; the host's other DNS is untouched. Undone with
//     `resolvectl revert knit0` (and by the link going away with knitd).
//   otherwise, only with `knit set --manage-resolv-conf=true`:
//     /etc/resolv.conf is copied to STATE/resolv.conf.pre-knit, then rewritten in place (a bind
//     mount or a symlink's target stays what it is): nameserver 100.100.100.100, the mesh domain
//     first in the search list, the original's other lines kept. Restored byte for byte on
//     `knit down`, on exit and, after a crash, when knitd starts.
//   otherwise: nothing (the mesh resolver still answers whoever asks it).
//
// The host's original resolvers (where other names go) come from resolv.conf, or from the
// backup when knitd wrote it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/ip.hpp"

namespace knit::agent {

struct HostDnsOptions {
  std::filesystem::path state_dir;
  std::filesystem::path resolv_conf = "/etc/resolv.conf";
  std::string resolvectl = "resolvectl";          // found on PATH
  std::filesystem::path resolved_runtime = "/run/systemd/resolve";
};

struct HostDnsWish {
  std::string link;  // the TUN
  std::string domain;
  std::vector<std::string> split_domains;
  std::vector<IpAddress> resolvers;  // the mesh resolver's addresses
  friend bool operator==(const HostDnsWish&, const HostDnsWish&) = default;
};

// What resolv.conf says: nameservers (port 53), search domains, other lines.
struct ResolvConf {
  std::vector<IpAddress> nameservers;
  std::vector<std::string> search;
  std::vector<std::string> other_lines;  // options, sortlist, ... as written
};
ResolvConf parse_resolv_conf(const std::string& text);
// The file knitd writes: the mesh resolvers, the mesh domain before the original search list.
std::string render_resolv_conf(const ResolvConf& original, const HostDnsWish& wish);

class HostDns {
 public:
  enum class Mode { off, resolved, resolv_conf };

  explicit HostDns(HostDnsOptions options) : options_(std::move(options)) {}

  // A backup left by a knitd that did not exit cleanly is put back first.
  void recover();
  // The resolvers the host had before knitd touched anything (port 53).
  std::vector<Endpoint> original_resolvers() const;
  // Applies (or re-applies) the wish; manage_resolv_conf allows the resolv.conf mode.
  void apply(const HostDnsWish& wish, bool manage_resolv_conf);
  // Undoes whatever apply did. Idempotent.
  void revert();

  Mode mode() const { return mode_; }
  static const char* to_string(Mode mode);
  // Where it went: "link knit0, domains ~knit.internal" / "/etc/resolv.conf (backup ...)" / why off.
  const std::string& detail() const { return detail_; }
  bool resolved_available() const;

 private:
  std::filesystem::path backup_path() const { return options_.state_dir / "resolv.conf.pre-knit"; }
  bool run(const std::vector<std::string>& argv) const;

  HostDnsOptions options_;
  Mode mode_ = Mode::off;
  std::string detail_ = "not joined";
  std::string link_;  // the link resolved was told about
};

}  // namespace knit::agent
