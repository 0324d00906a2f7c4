// Host DNS integration without systemd-resolved: resolv.conf rewritten only when allowed,
// backed up, restored byte for byte (revert, and recover after a crash); parsing and rendering;
// the agent's DNS settings file; the IPv6 resolver address.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "agent/dns_control.hpp"
#include "agent/host_dns.hpp"
#include "tests/support/temp_dir.hpp"

namespace knit::agent {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}
void spit(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

const std::string kOriginal =
    "# from DHCP\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch corp.example lab.example\n"
    "options timeout:1 edns0\n";

class HostDnsTest : public ::testing::Test {
 protected:
  HostDnsTest() {
    spit(resolv_, kOriginal);
    options_.state_dir = dir_.path() / "state";
    options_.resolv_conf = resolv_;
    options_.resolved_runtime = dir_.path() / "no-resolved";  // absent: no systemd-resolved
  }
  HostDnsWish wish() const {
    HostDnsWish w;
    w.link = "knit0";
    w.domain = "knit.internal";
    w.resolvers = {IpAddress::parse("100.100.100.100").value()};
    return w;
  }
  knit::testing::TempDir dir_;
  fs::path resolv_ = dir_.path() / "resolv.conf";
  HostDnsOptions options_;
};

TEST_F(HostDnsTest, ParsesAndRenders) {
  const ResolvConf rc = parse_resolv_conf(kOriginal);
  ASSERT_EQ(rc.nameservers.size(), 2u);
  EXPECT_EQ(rc.search, (std::vector<std::string>{"corp.example", "lab.example"}));
  EXPECT_EQ(rc.other_lines, (std::vector<std::string>{"options timeout:1 edns0"}));
  const std::string text = render_resolv_conf(rc, wish());
  EXPECT_NE(text.find("\nnameserver 100.100.100.100\n"), std::string::npos);
  EXPECT_NE(text.find("\nsearch knit.internal corp.example lab.example\n"), std::string::npos);
  EXPECT_NE(text.find("\noptions timeout:1 edns0\n"), std::string::npos);
  EXPECT_EQ(text.find("192.0.2.53"), std::string::npos);
}

TEST_F(HostDnsTest, LeavesResolvConfAloneUnlessAllowed) {
  HostDns host(options_);
  host.apply(wish(), /*manage_resolv_conf=*/false);
  EXPECT_EQ(host.mode(), HostDns::Mode::off);
  EXPECT_EQ(slurp(resolv_), kOriginal);
}

TEST_F(HostDnsTest, RewritesThenRestoresExactly) {
  HostDns host(options_);
  const auto upstreams = host.original_resolvers();
  ASSERT_EQ(upstreams.size(), 2u);
  EXPECT_EQ(upstreams[0].to_string(), "192.0.2.53:53");
  host.apply(wish(), true);
  EXPECT_EQ(host.mode(), HostDns::Mode::resolv_conf);
  EXPECT_NE(slurp(resolv_).find("nameserver 100.100.100.100"), std::string::npos);
  // The upstreams are still the original ones (read from the backup now).
  EXPECT_EQ(host.original_resolvers(), upstreams);
  // A new domain rewrites from the backup, not from our own file.
  HostDnsWish other = wish();
  other.domain = "corp.internal";
  host.apply(other, true);
  EXPECT_NE(slurp(resolv_).find("search corp.internal corp.example lab.example\n"), std::string::npos);
  host.revert();
  EXPECT_EQ(host.mode(), HostDns::Mode::off);
  EXPECT_EQ(slurp(resolv_), kOriginal);
  host.revert();  // idempotent
  EXPECT_EQ(slurp(resolv_), kOriginal);
}

TEST_F(HostDnsTest, RecoversAfterACrash) {
  {
    HostDns host(options_);
    host.apply(wish(), true);  // and then knitd "crashes": no revert
  }
  EXPECT_NE(slurp(resolv_), kOriginal);
  HostDns next(options_);
  next.recover();
  EXPECT_EQ(slurp(resolv_), kOriginal);
}

TEST_F(HostDnsTest, WithResolvedSetsTheLinkOnlyAndRevertsIt) {
  // A stand-in resolvectl that records its arguments; resolved "runs" (its runtime dir exists).
  const fs::path log = dir_.path() / "resolvectl.log";
  const fs::path fake = dir_.path() / "resolvectl";
  spit(fake, "#!/bin/sh\necho \"$@\" >> " + log.string() + "\n");
  fs::permissions(fake, fs::perms::owner_all);
  fs::create_directories(options_.resolved_runtime);
  options_.resolvectl = fake.string();
  HostDns host(options_);
  ASSERT_TRUE(host.resolved_available());
  HostDnsWish w = wish();
  w.split_domains = {"corp.example"};
  host.apply(w, /*manage_resolv_conf=*/true);  // resolved wins: resolv.conf stays the host's
  EXPECT_EQ(host.mode(), HostDns::Mode::resolved);
  EXPECT_EQ(slurp(resolv_), kOriginal);
  EXPECT_EQ(slurp(log),
            "dns knit0 100.100.100.100\ndomain knit0 ~knit.internal ~corp.example\ndefault-route knit0 false\n");
  host.revert();
  EXPECT_EQ(host.mode(), HostDns::Mode::off);
  EXPECT_NE(slurp(log).find("\nrevert knit0\n"), std::string::npos);
}

TEST(DnsSettings, RoundTripAndDefaults) {
  EXPECT_EQ(parse_dns_settings(""), DnsSettings{});
  DnsSettings s{false, true};
  EXPECT_EQ(parse_dns_settings(encode_dns_settings(s)), s);
}

TEST(ResolverIpv6, IsTheUlaWithTheIpv4Resolver) {
  EXPECT_EQ(resolver_ipv6(IpPrefix::parse("fd12:3456:789a::/48").value(), IpAddress::parse("100.100.100.100").value()).to_string(),
            "fd12:3456:789a::6464:6464");
}

}  // namespace
}  // namespace knit::agent
