// Handshake slots (base/handshake_slots.hpp) and the coordinator's use of them: a flood of silent
// connections, from one source or many, never locks a joining agent out; it costs the flooder
// its own oldest connections.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

#include "base/handshake_slots.hpp"
#include "tests/support/coordinator_server_fixture.hpp"

namespace knit::coordinator {
namespace {

SourceKey v4(const char* text) { return source_key(IpAddress::parse(text).value()); }

TEST(HandshakeSlots, AdmitsWithinTheLimitsWithoutEvicting) {
  HandshakeSlots<int> slots(4, 2);
  EXPECT_EQ(slots.admit(1, v4("192.0.2.1")), std::nullopt);
  EXPECT_EQ(slots.admit(2, v4("192.0.2.1")), std::nullopt);
  EXPECT_EQ(slots.admit(3, v4("192.0.2.2")), std::nullopt);
  EXPECT_EQ(slots.size(), 3u);
  EXPECT_EQ(slots.sources(), 2u);
  EXPECT_EQ(slots.held_by(v4("192.0.2.1")), 2u);
}

TEST(HandshakeSlots, ASourceAtItsShareLosesItsOwnOldest) {
  HandshakeSlots<int> slots(8, 2);
  slots.admit(1, v4("192.0.2.1"));
  slots.admit(2, v4("192.0.2.9"));
  slots.admit(3, v4("192.0.2.1"));
  EXPECT_EQ(slots.admit(4, v4("192.0.2.1")), 1);
  EXPECT_EQ(slots.admit(5, v4("192.0.2.1")), 3);
  EXPECT_EQ(slots.held_by(v4("192.0.2.1")), 2u);
  EXPECT_EQ(slots.held_by(v4("192.0.2.9")), 1u);  // untouched
}

TEST(HandshakeSlots, AFullTableEvictsTheOldestOfTheBusiestSource) {
  HandshakeSlots<int> slots(5, 5);
  slots.admit(1, v4("192.0.2.7"));  // the oldest of all, but its source holds one
  slots.admit(2, v4("192.0.2.1"));
  slots.admit(3, v4("192.0.2.1"));
  slots.admit(4, v4("192.0.2.1"));
  slots.admit(5, v4("192.0.2.8"));
  EXPECT_EQ(slots.admit(6, v4("192.0.2.9")), 2);
  EXPECT_EQ(slots.admit(7, v4("192.0.2.9")), 3);
  // 192.0.2.1 is down to one (4); 192.0.2.9 now holds the most (6, 7).
  EXPECT_EQ(slots.admit(8, v4("192.0.2.10")), 6);
  EXPECT_EQ(slots.size(), 5u);
  EXPECT_EQ(slots.held_by(v4("192.0.2.7")), 1u);
}

TEST(HandshakeSlots, ReleaseFreesTheSlotAndIgnoresStrangers) {
  HandshakeSlots<int> slots(2, 2);
  slots.admit(1, v4("192.0.2.1"));
  slots.admit(2, v4("192.0.2.1"));
  slots.release(1);
  slots.release(1);
  slots.release(42);
  EXPECT_EQ(slots.size(), 1u);
  EXPECT_EQ(slots.admit(3, v4("192.0.2.2")), std::nullopt);
  slots.release(2);
  slots.release(3);
  EXPECT_EQ(slots.size(), 0u);
  EXPECT_EQ(slots.sources(), 0u);
  slots.admit(4, v4("192.0.2.1"));
  slots.clear();
  EXPECT_EQ(slots.size(), 0u);
  EXPECT_EQ(slots.held_by(v4("192.0.2.1")), 0u);
}

TEST(HandshakeSlots, ZeroOrOversizedSharesMeanTheWholeTable) {
  HandshakeSlots<int> slots(3, 0);
  EXPECT_EQ(slots.admit(1, v4("192.0.2.1")), std::nullopt);
  EXPECT_EQ(slots.admit(2, v4("192.0.2.1")), std::nullopt);
  EXPECT_EQ(slots.admit(3, v4("192.0.2.1")), std::nullopt);
  EXPECT_EQ(slots.admit(4, v4("192.0.2.1")), 1);
  HandshakeSlots<int> wide(2, 100);
  wide.admit(1, v4("192.0.2.1"));
  wide.admit(2, v4("192.0.2.1"));
  EXPECT_EQ(wide.admit(3, v4("192.0.2.1")), 1);
}

TEST(HandshakeSlots, SourcesAreIpv4AddressesAndIpv6Slash64s) {
  EXPECT_EQ(v4("192.0.2.1"), v4("::ffff:192.0.2.1"));
  EXPECT_NE(v4("192.0.2.1"), v4("192.0.2.2"));
  EXPECT_EQ(v4("2001:db8:1:2::1"), v4("2001:db8:1:2:ffff:1:2:3"));
  EXPECT_NE(v4("2001:db8:1:2::1"), v4("2001:db8:1:3::1"));
  EXPECT_NE(v4("::ffff:192.0.2.1"), v4("::c000:201"));  // IPv4-compatible is plain IPv6
  SourceKeyHash hash;
  EXPECT_EQ(hash(v4("2001:db8:1:2::1")), hash(v4("2001:db8:1:2::2")));
}

TEST(HandshakeSlots, RandomTrafficKeepsBothBoundsAndEvictsOnlyHolders) {
  std::mt19937 random(7);
  HandshakeSlots<int> slots(64, 16);
  std::set<int> held;
  int next = 0;
  for (int step = 0; step < 20000; ++step) {
    if (!held.empty() && random() % 3 == 0) {
      auto it = held.begin();
      std::advance(it, random() % held.size());
      slots.release(*it);
      held.erase(it);
      continue;
    }
    const int source = static_cast<int>(random() % 10);
    const std::string address = "10.0.0." + std::to_string(source);
    const int id = next++;
    auto evicted = slots.admit(id, v4(address.c_str()));
    if (evicted) {
      ASSERT_EQ(held.count(*evicted), 1u) << "evicted a connection that held no slot";
      held.erase(*evicted);
    }
    held.insert(id);
    ASSERT_EQ(slots.size(), held.size());
    ASSERT_LE(slots.size(), 64u);
    ASSERT_LE(slots.held_by(v4(address.c_str())), 16u);
  }
}

// Through the server: silent connections from 127.0.0.2 never keep an agent from 127.0.0.1 out.
int connect_from(std::uint16_t port, const char* source) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &local.sin_addr);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0 ||
      ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST_F(ServerTest, SilentConnectionsFromOneSourceCostOnlyTheirOwnSlots) {
  ServerOptions options;
  options.max_handshakes = 8;
  options.max_handshakes_per_source = 4;
  options.session.handshake_timeout = 30s;  // only eviction may end them within the test
  start(options);
  std::vector<int> flood;
  for (int i = 0; i < 20; ++i) {
    const int fd = connect_from(port_, "127.0.0.2");
    ASSERT_GE(fd, 0);
    flood.push_back(fd);
  }
  // The oldest 16 were cut to make room for the newer ones; the newest 4 are held.
  for (int i = 0; i < 16; ++i) EXPECT_TRUE(closed_by_server(flood[i], 3000ms)) << i;
  for (int i = 16; i < 20; ++i) EXPECT_FALSE(closed_by_server(flood[i], 50ms)) << i;

  auto a = joined(reusable_token(), "steady");  // from 127.0.0.1: its source holds nothing
  ASSERT_TRUE(a->send(control::Ping{3}));
  ASSERT_TRUE(a->wait_for<control::Pong>());
  const ServerCounters c = counters();
  EXPECT_EQ(c.evicted_handshakes, 16u);
  EXPECT_EQ(c.refused_connections, 0u);
  EXPECT_EQ(c.accepted, 21u);
  for (int fd : flood) ::close(fd);
}

TEST_F(ServerTest, AFullTableFromManySourcesStillLetsAnAgentJoin) {
  ServerOptions options;
  options.max_handshakes = 6;
  options.max_handshakes_per_source = 6;
  options.session.handshake_timeout = 30s;
  start(options);
  std::vector<int> flood;
  const char* sources[] = {"127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
  for (const char* source : sources) {
    const int fd = connect_from(port_, source);
    ASSERT_GE(fd, 0);
    flood.push_back(fd);
  }
  auto a = joined(reusable_token(), "newcomer");  // evicts 127.0.0.2's oldest
  EXPECT_TRUE(closed_by_server(flood[0], 3000ms));
  for (std::size_t i = 1; i < flood.size(); ++i) EXPECT_FALSE(closed_by_server(flood[i], 50ms)) << i;
  ASSERT_TRUE(a->send(control::Ping{4}));
  ASSERT_TRUE(a->wait_for<control::Pong>());
  EXPECT_EQ(counters().evicted_handshakes, 1u);
  // The agent's registration gave its slot back: one more silent connection fills the table,
  // and the next join evicts 127.0.0.2's next oldest, never the registered agent.
  const int late = connect_from(port_, "127.0.0.6");
  ASSERT_GE(late, 0);
  flood.push_back(late);
  EXPECT_FALSE(closed_by_server(flood[1], 50ms));
  auto b = joined(reusable_token(), "second");
  EXPECT_TRUE(closed_by_server(flood[1], 3000ms));
  EXPECT_FALSE(closed_by_server(late, 50ms));
  ASSERT_TRUE(a->send(control::Ping{5}));
  ASSERT_TRUE(a->wait_for<control::Pong>());
  EXPECT_EQ(counters().evicted_handshakes, 2u);
  for (int fd : flood) ::close(fd);
}

}  // namespace
}  // namespace knit::coordinator
