// Stand-in endpoints for mesh peers: unique per key, recognisable, reversible, reused.
#include <gtest/gtest.h>

#include "punch/path/virtual_endpoints.hpp"

namespace knit::punch {
namespace {

wg::PublicKey key(std::uint8_t n) {
  wg::PublicKey k{};
  k.fill(n);
  return k;
}

TEST(VirtualEndpoints, EachKeyGetsItsOwnStandInFromTheDiscardPrefix) {
  VirtualEndpoints v;
  const Endpoint a = v.assign(key(1));
  const Endpoint b = v.assign(key(2));
  EXPECT_NE(a, b);
  EXPECT_EQ(v.assign(key(1)), a);  // stable
  EXPECT_TRUE(VirtualEndpoints::is_virtual(a));
  EXPECT_EQ(a.to_string().substr(0, 6), "[100::");
  EXPECT_EQ(v.key_of(a), key(1));
  EXPECT_EQ(v.key_of(b), key(2));
  EXPECT_EQ(v.find(key(2)), b);
  EXPECT_EQ(v.size(), 2u);
}

TEST(VirtualEndpoints, RealAddressesAreNeverVirtual) {
  for (const char* text : {"192.0.2.1:1", "[2001:db8::1]:1", "[100::1]:2", "[100:0:0:1::1]:1",
                           "[::1]:1"}) {
    auto e = Endpoint::parse(text);
    ASSERT_TRUE(e) << text;
    EXPECT_FALSE(VirtualEndpoints::is_virtual(*e)) << text;
  }
}

TEST(VirtualEndpoints, ReleasedSlotsAreForgottenAndReused) {
  VirtualEndpoints v;
  const Endpoint a = v.assign(key(1));
  v.release(key(1));
  EXPECT_FALSE(v.key_of(a));
  EXPECT_FALSE(v.find(key(1)));
  const Endpoint c = v.assign(key(3));
  EXPECT_EQ(c, a);
  EXPECT_EQ(v.key_of(c), key(3));
  v.release(key(9));  // unknown: nothing happens
  EXPECT_EQ(v.size(), 1u);
}

}  // namespace
}  // namespace knit::punch
