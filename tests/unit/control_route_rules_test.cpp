// Which prefixes may be subnet routes (control/route_rules.hpp), as a numbered table, and the
// CIDR list syntax of --advertise-routes / --auto-approve.
#include <gtest/gtest.h>

#include "control/route_rules.hpp"

namespace knit::control {
namespace {

IpPrefix P(const char* text) { return IpPrefix::parse(text).value(); }

TEST(RouteRules, Table) {
  const std::vector<IpPrefix> mesh{P("100.64.0.0/10"), P("fd7a:115c:a1e0::/48")};
  const std::vector<IpPrefix> underlay{P("192.0.2.1/32")};
  struct Case {
    const char* route;
    bool ok;
  };
  const Case cases[] = {
      /* 1 */ {"192.168.1.0/24", true},
      /* 2 */ {"10.0.0.0/8", true},
      /* 3 */ {"fd00:1::/64", true},
      /* 4 */ {"2001:db8::/32", true},
      /* 5 */ {"100.64.0.0/10", false},    // the mesh
      /* 6 */ {"100.100.0.0/16", false},   // inside the mesh
      /* 7 */ {"100.0.0.0/8", false},      // around the mesh
      /* 8 */ {"fd7a:115c:a1e0:1::/64", false},
      /* 9 */ {"127.0.0.0/8", false},
      /* 10 */ {"127.1.0.0/16", false},
      /* 11 */ {"::1/128", false},
      /* 12 */ {"169.254.0.0/16", false},
      /* 13 */ {"fe80::/10", false},
      /* 14 */ {"fe80::/64", false},
      /* 15 */ {"224.0.0.0/4", false},
      /* 16 */ {"ff02::/16", false},
      /* 17 */ {"0.0.0.0/0", false},       // an exit route, not a subnet
      /* 18 */ {"::/0", false},
      /* 19 */ {"192.0.2.0/24", false},    // holds the underlay
      /* 20 */ {"192.0.2.128/25", true},   // beside it
      /* 21 */ {"0.0.0.0/8", false},
      /* 22 */ {"64.0.0.0/2", false},      // holds the mesh prefix
  };
  int n = 0;
  for (const Case& c : cases) {
    ++n;
    const std::string why = route_problem(P(c.route), mesh, underlay);
    EXPECT_EQ(why.empty(), c.ok) << "case " << n << " " << c.route << ": " << why;
    if (!why.empty()) {
      EXPECT_EQ(why.find('\n'), std::string::npos);
    }
  }
  // Host bits set.
  IpPrefix host_bits = P("10.0.0.0/24");
  host_bits.address = IpAddress::parse("10.0.0.1").value();
  EXPECT_FALSE(route_problem(host_bits, mesh).empty());
}

TEST(RouteRules, Overlap) {
  EXPECT_TRUE(prefixes_overlap(P("10.0.0.0/8"), P("10.1.0.0/16")));
  EXPECT_TRUE(prefixes_overlap(P("10.1.0.0/16"), P("10.0.0.0/8")));
  EXPECT_FALSE(prefixes_overlap(P("10.0.0.0/16"), P("10.1.0.0/16")));
  EXPECT_FALSE(prefixes_overlap(P("10.0.0.0/8"), P("fd00::/8")));
  EXPECT_TRUE(prefix_holds(P("0.0.0.0/0"), IpAddress::parse("8.8.8.8").value()));
  EXPECT_FALSE(prefix_holds(P("0.0.0.0/0"), IpAddress::parse("::1").value()));
}

TEST(RouteRules, ListSyntax) {
  std::string error;
  auto list = parse_route_list("10.0.0.0/8, 192.168.1.0/24,exit,10.0.0.0/8", true, error);
  ASSERT_TRUE(list) << error;
  EXPECT_EQ(list->routes, (std::vector<IpPrefix>{P("10.0.0.0/8"), P("192.168.1.0/24")}));
  EXPECT_TRUE(list->exit);
  EXPECT_EQ(format_route_list(*list), "10.0.0.0/8,192.168.1.0/24,exit");
  EXPECT_TRUE(parse_route_list("", true, error));
  EXPECT_FALSE(parse_route_list("exit", false, error));
  EXPECT_FALSE(parse_route_list("10.0.0.1", true, error));  // a bare address is not a route
  EXPECT_FALSE(parse_route_list("10.0.0.1/8", true, error));
  EXPECT_NE(error.find("host bits"), std::string::npos);
  EXPECT_FALSE(parse_route_list("10.0.0.0/8,,", true, error));
  EXPECT_FALSE(parse_route_list("10.0.0.0/40", true, error));
}

}  // namespace
}  // namespace knit::control
