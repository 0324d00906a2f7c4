#include "agent/dns_control.hpp"

#include <fstream>
#include <sstream>

#include "base/log.hpp"

namespace knit::agent {
namespace fs = std::filesystem;

std::string encode_dns_settings(const DnsSettings& s) {
  return std::string("accept_dns=") + (s.accept_dns ? "true" : "false") +
         "\nmanage_resolv_conf=" + (s.manage_resolv_conf ? "true" : "false") + "\n";
}

DnsSettings parse_dns_settings(const std::string& text) {
  DnsSettings out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line == "accept_dns=false") out.accept_dns = false;
    if (line == "accept_dns=true") out.accept_dns = true;
    if (line == "manage_resolv_conf=true") out.manage_resolv_conf = true;
    if (line == "manage_resolv_conf=false") out.manage_resolv_conf = false;
  }
  return out;
}

IpAddress resolver_ipv6(const IpPrefix& ula, const IpAddress& resolver_v4) {
  std::array<std::uint8_t, 16> bytes{};
  for (int i = 0; i < 6; ++i) bytes[i] = ula.address.bytes()[i];
  for (int i = 0; i < 4; ++i) bytes[12 + i] = resolver_v4.bytes()[i];
  return IpAddress::v6(bytes.data());
}

std::string resolver_address_problem(const IpAddress& resolver, const IpPrefix& mesh_v4) {
  if (resolver == IpAddress::v4(kDefaultResolverIpv4) || !dns::prefix_contains(mesh_v4, resolver)) return {};
  return "the resolver address " + resolver.to_string() + " is inside the mesh prefix " + mesh_v4.to_string() +
         ", where the coordinator may give it to a node (it reserves only 100.100.100.100): names are off;"
         " choose an address outside the prefix with --resolver-address";
}

DnsControl::DnsControl(Membership& membership, DnsService& service, HostDns& host, Options options,
                       ControlHandler& next)
    : membership_(membership), service_(service), host_(host), options_(std::move(options)), next_(next) {}

void DnsControl::start() {
  host_.recover();
  std::ifstream in(settings_path());
  if (in) {
    std::ostringstream text;
    text << in.rdbuf();
    settings_ = parse_dns_settings(text.str());
  }
  upstreams_ = host_.original_resolvers();
  service_.set_upstreams(upstreams_);
  membership_.set_names_listener([this](const Membership::NamesChange* change) {
    if (change != nullptr) return update_names(*change);
    refresh();
  });
  refresh();
}

void DnsControl::stop() {
  stopped_ = true;
  membership_.set_names_listener(nullptr);
  host_.revert();
}

// A delta renamed, added or removed a few peers: only the resolver's table changes, in
// O(changed). While the resolver is off (no mesh, a bad resolver address) there is nothing to
// follow: refresh() decides everything then.
void DnsControl::update_names(const Membership::NamesChange& change) {
  if (stopped_) return;
  const auto& mesh = membership_.mesh();
  if (!mesh || mesh->down || !problem_.empty()) return refresh();
  std::vector<dns::MeshNode> gone, came;
  gone.reserve(change.gone.size());
  came.reserve(change.came.size());
  for (const control::PeerInfo& p : change.gone) gone.push_back({p.name, p.ipv4, p.ipv6});
  for (const control::PeerInfo& p : change.came) came.push_back({p.name, p.ipv4, p.ipv6});
  service_.update_names(gone, came);
}

void DnsControl::refresh() {
  if (stopped_) return;
  const auto& mesh = membership_.mesh();
  const auto& dns = membership_.dns_config();
  const IpPrefix resolver_route{options_.resolver_v4, 32};
  if (!mesh || mesh->down) {
    if (routed_ && options_.link) options_.link->remove_route(resolver_route);
    routed_ = false;
    service_.set_listen({});
    service_.set_clients({});
    service_.set_names({}, {}, std::nullopt, std::nullopt);
    service_.set_split({});
    if (applied_) host_.revert();
    applied_.reset();
    return;
  }
  if (std::string problem = resolver_address_problem(options_.resolver_v4, mesh->ipv4_prefix); !problem.empty()) {
    if (problem != problem_) log(LogLevel::error, "knitd", "dns: ", problem);
    problem_ = std::move(problem);
    service_.set_listen({});
    service_.set_clients({});
    if (applied_) host_.revert();
    applied_.reset();
    return;
  }
  problem_.clear();
  const std::vector<IpAddress> listen = {options_.resolver_v4, resolver_ipv6(mesh->ipv6_prefix, options_.resolver_v4)};
  service_.set_listen(listen);
  if (!routed_ && options_.link && !dns::prefix_contains(mesh->ipv4_prefix, options_.resolver_v4)) {
    if (auto ec = options_.link->add_route(resolver_route); ec)
      log(LogLevel::warn, "knitd", "dns: cannot route ", options_.resolver_v4.to_string(), " into the TUN: ", ec.message());
    else
      routed_ = true;
  }
  service_.set_clients({mesh->ipv4, mesh->ipv6});
  std::vector<dns::MeshNode> nodes;
  nodes.push_back({mesh->name, mesh->ipv4, mesh->ipv6});
  for (const control::PeerInfo& peer : membership_.peers().peers) nodes.push_back({peer.name, peer.ipv4, peer.ipv6});
  service_.set_names(dns ? dns->domain : std::string(), nodes, mesh->ipv4_prefix, mesh->ipv6_prefix);
  std::map<std::string, std::vector<Endpoint>> split;
  if (dns)
    for (const control::SplitDns& entry : dns->split) split[entry.domain] = entry.resolvers;
  service_.set_split(std::move(split));

  if (!settings_.accept_dns || !dns) {
    if (applied_) host_.revert();
    applied_.reset();
    return;
  }
  HostDnsWish wish;
  wish.link = options_.tun_name;
  wish.domain = dns->domain;
  for (const control::SplitDns& entry : dns->split) wish.split_domains.push_back(entry.domain);
  // Both resolver addresses (the IPv4 one first: a stub asks the next only when one fails);
  // the IPv6 one is inside the mesh ULA, so the mesh's IPv6 route already takes it to the TUN.
  wish.resolvers = listen;
  if (applied_ && applied_->first == wish && applied_->second == settings_.manage_resolv_conf) return;
  applied_ = std::make_pair(wish, settings_.manage_resolv_conf);
  host_.apply(wish, settings_.manage_resolv_conf);
}

void DnsControl::handle_request(localapi::ControlRequest request, Reply reply) {
  if (std::holds_alternative<localapi::DnsStatusRequest>(request)) return reply(localapi::DnsStatusReply{status()});
  if (auto* set_request = std::get_if<localapi::SetRequest>(&request)) {
    const localapi::SetRequest mine = *set_request;
    if (!mine.accept_dns && !mine.manage_resolv_conf) {
      // Only shields: the filter answers; the DNS settings ride along.
      return next_.handle_request(std::move(request), [this, reply, mine](localapi::ControlResponse response) {
        reply(set(mine, std::move(response)));
      });
    }
    // The filter answers shields (with nothing to change when they were not asked about).
    return next_.handle_request(localapi::SetRequest{mine.shields_up, std::nullopt, std::nullopt, std::nullopt},
                                [this, reply, mine](localapi::ControlResponse response) {
                                  reply(set(mine, std::move(response)));
                                });
  }
  next_.handle_request(std::move(request), std::move(reply));
}

localapi::ControlResponse DnsControl::set(const localapi::SetRequest& request, localapi::ControlResponse next_answer) {
  auto* answer = std::get_if<localapi::SetReply>(&next_answer);
  if (answer == nullptr) return next_answer;  // an error from the filter
  DnsSettings wanted = settings_;
  if (request.accept_dns) wanted.accept_dns = *request.accept_dns;
  if (request.manage_resolv_conf) wanted.manage_resolv_conf = *request.manage_resolv_conf;
  if (wanted != settings_) {
    settings_ = wanted;
    log(LogLevel::info, "knitd", "dns: accept-dns ", settings_.accept_dns ? "true" : "false", ", manage-resolv-conf ",
        settings_.manage_resolv_conf ? "true" : "false");
    std::error_code ec;
    fs::create_directories(options_.state_dir, ec);
    std::ofstream out(settings_path(), std::ios::trunc);
    out << encode_dns_settings(settings_);
    refresh();
    if (!out) return localapi::ErrorReply{"applied, but not saved to " + settings_path().string()};
  }
  answer->accept_dns = settings_.accept_dns;
  answer->manage_resolv_conf = settings_.manage_resolv_conf;
  return next_answer;
}

localapi::DnsStatus DnsControl::status() const {
  localapi::DnsStatus s;
  s.accept_dns = settings_.accept_dns;
  s.manage_resolv_conf = settings_.manage_resolv_conf;
  s.mode = HostDns::to_string(host_.mode());
  s.detail = problem_.empty() ? host_.detail() : problem_;
  if (const auto& dns = membership_.dns_config()) {
    s.domain = dns->domain;
    for (const auto& entry : dns->split)
      for (const Endpoint& r : entry.resolvers) s.split[entry.domain].push_back(r.to_string());
  }
  for (const IpAddress& a : service_.listen()) s.listen.push_back(a.to_string());
  for (const Endpoint& u : upstreams_) s.upstreams.push_back(u.to_string());
  const auto& r = service_.resolver();
  s.names = r.table().size();
  const auto& c = r.counters();
  const auto& f = r.forwarder().counters();
  s.counters = {{"queries", c.queries},          {"answered_mesh", c.answered_mesh},
                {"rate_limited", c.rate_limited}, {"malformed", c.malformed},
                {"forwarded", f.forwarded},       {"cache_hits", f.cache_hits},
                {"tcp_retries", f.tcp_retries},   {"timeouts", f.timeouts},
                {"servfail", f.servfail},         {"mismatched", f.mismatched},
                {"bad_responses", f.bad_responses}, {"not_udp53", service_.dropped_other()},
                {"refused_source", service_.refused_source()}};
  // DNS over TCP from local stubs ("not_udp53" above keeps its name: it now counts what is
  // neither UDP/53 nor TCP/53).
  const auto& t = service_.tcp_server().counters();
  s.counters.insert({{"tcp_connections", t.connections},
                     {"tcp_open", service_.tcp_server().connections()},
                     {"tcp_queries", t.queries},
                     {"tcp_answers", t.answers},
                     {"tcp_refused_full", t.refused_full},
                     {"tcp_dropped", t.answers_dropped + t.queries_dropped},
                     {"tcp_malformed", t.malformed + t.bad_length},
                     {"tcp_retransmits", t.retransmits},
                     {"tcp_resets_sent", t.resets_sent},
                     {"tcp_timed_out", t.timed_out},
                     {"tcp_idle_closed", t.idle_closed}});
  return s;
}

}  // namespace knit::agent
