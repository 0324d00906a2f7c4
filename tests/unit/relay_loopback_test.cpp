// knit-relay's server and RelayClient over real sockets on loopback, one io_context: two
// clients through one relay, through two meshed relays, with garbage and half-open connections
// thrown at the port meanwhile, an unknown key refused, a member cut off, TLS and plain clients
// on one port (a self-signed certificate made with openssl), and the metrics endpoint.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/metrics.hpp"
#include "base/random.hpp"
#include "net/metrics_server.hpp"
#include "relay/relay_client.hpp"
#include "relay/server.hpp"
#include "relay/stream.hpp"
#include "tests/support/temp_dir.hpp"
#include "wg/crypto.hpp"

namespace knit::relay {
namespace {

bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A RelayClient and everything it saw.
struct Node {
  Node(asio::io_context& io, Random& rng)
      : key(wg::crypto::generate_private_key(rng)),
        pub(wg::crypto::public_key_of(key)),
        client(io, key, rng) {
    client.on_packet([this](const NodeKey& src, ByteSpan packet) {
      packets.emplace_back(src, Bytes(packet.begin(), packet.end()));
    });
    client.on_state([this](bool up, const std::string& detail) {
      states.emplace_back(up, detail);
    });
    client.on_peer_gone([this](const NodeKey& peer) { gone.push_back(peer); });
  }
  wg::PrivateKey key;
  NodeKey pub;
  RelayClient client;
  std::vector<std::pair<NodeKey, Bytes>> packets;
  std::vector<std::pair<bool, std::string>> states;
  std::vector<NodeKey> gone;
};

std::string address_of(const Server& server, bool tls = false) {
  return std::string(tls ? "tls://" : "") + "127.0.0.1:" +
         std::to_string(server.local_endpoint().port());
}

class RelayLoopbackTest : public ::testing::Test {
 protected:
  std::unique_ptr<Server> make_server(std::shared_ptr<asio::ssl::context> tls = nullptr) {
    Server::Options options;
    options.listen = {asio::ip::make_address("127.0.0.1"), 0};
    options.tls = std::move(tls);
    auto key = wg::crypto::generate_private_key(rng_);
    keys_.push_back(wg::crypto::public_key_of(key));
    auto server = std::make_unique<Server>(io_, key, options, rng_);
    server->start();
    return server;
  }
  bool exchange(Node& from, Node& to, std::size_t count, std::size_t size = 1420) {
    const std::size_t before = to.packets.size();
    for (std::size_t i = 0; i < count; ++i) {
      Bytes packet(size, static_cast<std::uint8_t>(i));
      EXPECT_TRUE(from.client.send(to.pub, packet));
    }
    const bool ok = run_until(io_, [&] { return to.packets.size() >= before + count; });
    for (std::size_t i = before; i < to.packets.size(); ++i) {
      EXPECT_EQ(to.packets[i].first, from.pub);
      EXPECT_EQ(to.packets[i].second.size(), size);
    }
    return ok;
  }

  asio::io_context io_;
  SeededRandom rng_{99};
  std::vector<NodeKey> keys_;
};

TEST_F(RelayLoopbackTest, TwoClientsThroughOneRelay) {
  auto server = make_server();
  Node a(io_, rng_), b(io_, rng_);
  server->set_members({a.pub, b.pub});
  a.client.connect({address_of(*server)}, keys_[0]);
  b.client.connect({address_of(*server)}, keys_[0]);
  // Connected on the client's side (message 2) comes a little before the relay admits it (at
  // its first transport message); a packet for a client not admitted yet is dropped (no route).
  ASSERT_TRUE(run_until(io_, [&] {
    return a.client.connected() && b.client.connected() && server->stats().admitted >= 2;
  }));
  ASSERT_TRUE(exchange(a, b, 200));
  ASSERT_TRUE(exchange(b, a, 200));
  EXPECT_TRUE(run_until(io_, [&] { return a.client.rtt().has_value(); }));
  EXPECT_EQ(server->stats().packets_local, 400u);

  // An unknown destination comes back as peer_gone.
  NodeKey nobody{};
  nobody.fill(3);
  a.client.send(nobody, Bytes(10, 1));
  EXPECT_TRUE(run_until(io_, [&] { return !a.gone.empty(); }));

  // b leaves the mesh: cut off at once, and told why.
  server->set_members({a.pub});
  ASSERT_TRUE(run_until(io_, [&] { return !b.states.empty() && !b.states.back().first; }));
  EXPECT_NE(b.states.back().second.find("removed"), std::string::npos) << b.states.back().second;
  EXPECT_EQ(server->stats().cut_off, 1u);
  b.client.close();
}

TEST_F(RelayLoopbackTest, UnknownKeyIsRefused) {
  auto server = make_server();
  Node member(io_, rng_), stranger(io_, rng_);
  server->set_members({member.pub});
  stranger.client.connect({address_of(*server)}, keys_[0]);
  ASSERT_TRUE(run_until(io_, [&] { return !stranger.states.empty(); }));
  EXPECT_FALSE(stranger.states[0].first);
  EXPECT_NE(stranger.states[0].second.find("not a mesh member"), std::string::npos)
      << stranger.states[0].second;
  EXPECT_FALSE(stranger.client.connected());
  EXPECT_EQ(server->stats().refused_not_member, 1u);
  stranger.client.close();

  // A client that trusts the wrong relay key gets nowhere either.
  Node confused(io_, rng_);
  server->set_members({member.pub, confused.pub});
  NodeKey wrong{};
  wrong.fill(9);
  confused.client.connect({address_of(*server)}, wrong);
  ASSERT_TRUE(run_until(io_, [&] { return server->stats().handshake_failed >= 1; }));
  EXPECT_FALSE(confused.client.connected());
  confused.client.close();
}

TEST_F(RelayLoopbackTest, TwoMeshedRelays) {
  auto x = make_server();
  auto y = make_server();
  control::RelayInfo xi{"x", keys_[0], {control::HostPort{"127.0.0.1", x->local_endpoint().port()}}, 0};
  control::RelayInfo yi{"y", keys_[1], {control::HostPort{"127.0.0.1", y->local_endpoint().port()}}, 0};
  Node a(io_, rng_), b(io_, rng_);
  for (Server* s : {x.get(), y.get()}) {
    s->set_members({a.pub, b.pub});
    s->set_relays({xi, yi});
  }
  ASSERT_TRUE(run_until(io_, [&] {
    return x->stats().relay_links == 1 && y->stats().relay_links == 1;
  }));
  a.client.connect({address_of(*x)}, keys_[0]);
  b.client.connect({address_of(*y)}, keys_[1]);
  ASSERT_TRUE(run_until(io_, [&] {
    return a.client.connected() && b.client.connected() && x->stats().remote_clients == 1 &&
           y->stats().remote_clients == 1;
  }));
  ASSERT_TRUE(exchange(a, b, 100));
  ASSERT_TRUE(exchange(b, a, 100));
  EXPECT_EQ(x->stats().packets_to_mesh, 100u);
  EXPECT_EQ(y->stats().packets_from_mesh, 100u);
  a.client.close();
  b.client.close();
}

TEST_F(RelayLoopbackTest, GarbageAndHalfOpenConnectionsDoNotDisturbForwarding) {
  auto server = make_server();
  Node a(io_, rng_), b(io_, rng_);
  server->set_members({a.pub, b.pub});
  a.client.connect({address_of(*server)}, keys_[0]);
  b.client.connect({address_of(*server)}, keys_[0]);
  // Connected on the client's side (message 2) comes a little before the relay admits it (at
  // its first transport message); a packet for a client not admitted yet is dropped (no route).
  ASSERT_TRUE(run_until(io_, [&] {
    return a.client.connected() && b.client.connected() && server->stats().admitted >= 2;
  }));

  std::vector<std::unique_ptr<asio::ip::tcp::socket>> attackers;
  SeededRandom junk_rng(5);
  for (int i = 0; i < 60; ++i) {
    auto s = std::make_unique<asio::ip::tcp::socket>(io_);
    s->connect(server->local_endpoint());
    Bytes junk;
    switch (i % 4) {
      case 0:  // random bytes
        junk.resize(1 + junk_rng.uniform(4000));
        junk_rng.fill(junk);
        break;
      case 1:  // half a handshake, then silence (slowloris)
        junk = {0, 0, 0, 98, 1, 2, 3};
        break;
      case 2:  // a frame declaring 16 MiB
        junk = {0, 0xff, 0xff, 0xff, 1};
        break;
      case 3:  // connect and say nothing (half-open)
        break;
    }
    if (!junk.empty()) asio::write(*s, asio::buffer(junk));
    attackers.push_back(std::move(s));
  }
  ASSERT_TRUE(exchange(a, b, 300));
  ASSERT_TRUE(exchange(b, a, 300));
  EXPECT_TRUE(run_until(io_, [&] { return server->stats().handshake_failed >= 30; }));
  EXPECT_EQ(server->stats().clients, 2u);
  a.client.close();
  b.client.close();
}

TEST_F(RelayLoopbackTest, TlsAndPlainClientsOnOnePort) {
  testing::TempDir dir;
  const auto cert = dir.path() / "cert.pem";
  const auto key = dir.path() / "key.pem";
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=relay.test -keyout " + key.string() + " -out " + cert.string() + " 2>/dev/null";
  if (std::system(command.c_str()) != 0) GTEST_SKIP() << "openssl cannot make a certificate";
  auto server = make_server(make_server_tls(cert, key));
  Node a(io_, rng_), b(io_, rng_);
  server->set_members({a.pub, b.pub});
  a.client.connect({address_of(*server, true)}, keys_[0]);
  b.client.connect({address_of(*server, false)}, keys_[0]);
  // Connected on the client's side (message 2) comes a little before the relay admits it (at
  // its first transport message); a packet for a client not admitted yet is dropped (no route).
  ASSERT_TRUE(run_until(io_, [&] {
    return a.client.connected() && b.client.connected() && server->stats().admitted >= 2;
  }));
  EXPECT_EQ(a.client.address().substr(0, 6), "tls://");
  ASSERT_TRUE(exchange(a, b, 200));
  ASSERT_TRUE(exchange(b, a, 200));
  a.client.close();
  b.client.close();
}

TEST_F(RelayLoopbackTest, MetricsEndpoint) {
  auto server = make_server();
  // As knit-relay --metrics serves them: the relay's samples in a registry, the shared endpoint.
  metrics::Registry registry;
  register_metrics(registry, [&]() -> const Stats& { return server->stats(); });
  net::MetricsServer metrics(io_, {asio::ip::make_address("127.0.0.1"), 0}, [&] { return registry.render(); });
  metrics.start();
  Node a(io_, rng_);
  server->set_members({a.pub});
  a.client.connect({address_of(*server)}, keys_[0]);
  ASSERT_TRUE(run_until(io_, [&] { return a.client.connected(); }));

  asio::ip::tcp::socket s(io_);
  s.connect(metrics.local_endpoint());
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(s, asio::buffer(request));
  std::string response;
  std::array<char, 4096> chunk{};
  bool done = false;
  std::function<void()> read = [&] {
    s.async_read_some(asio::buffer(chunk), [&](std::error_code ec, std::size_t n) {
      response.append(chunk.data(), n);
      if (ec) {
        done = true;
        return;
      }
      read();
    });
  };
  read();
  ASSERT_TRUE(run_until(io_, [&] { return done; }));
  EXPECT_EQ(response.substr(0, 15), "HTTP/1.1 200 OK");  // net/metrics_http.hpp answers in 1.1
  EXPECT_NE(response.find("\nknit_relay_clients 1\n"), std::string::npos) << response;
  EXPECT_NE(response.find("knit_relay_drops_total{reason=\"queue_full\"} 0"), std::string::npos);
  a.client.close();
  metrics.stop();
}

}  // namespace
}  // namespace knit::relay

namespace knit::relay {
namespace {

// A burst through the relay arrives whole and in order, in batches: the packets a client hands
// out stay valid (and writable) until their batch ends, so a receiver may collect spans and
// use them only at on_batch_end.
TEST_F(RelayLoopbackTest, BurstArrivesInOrderInBatchesThatStayValid) {
  auto server = make_server();
  Node a(io_, rng_), b(io_, rng_);
  std::vector<MutableByteSpan> pending;
  std::vector<Bytes> got;
  std::size_t batches = 0;
  b.client.on_packet([&](const NodeKey&, MutableByteSpan packet) { pending.push_back(packet); });
  b.client.on_batch_end([&] {
    ++batches;
    for (MutableByteSpan p : pending) got.emplace_back(p.begin(), p.end());
    pending.clear();
  });
  server->set_members({a.pub, b.pub});
  a.client.connect({address_of(*server)}, keys_[0]);
  b.client.connect({address_of(*server)}, keys_[0]);
  ASSERT_TRUE(run_until(io_, [&] {
    return a.client.connected() && b.client.connected() && server->stats().admitted >= 2;
  }));
  constexpr std::size_t kCount = 300;
  for (std::size_t i = 0; i < kCount; ++i) {
    Bytes packet(1000 + i % 400);
    for (std::size_t j = 0; j < packet.size(); ++j) packet[j] = static_cast<std::uint8_t>(i + j);
    ASSERT_TRUE(a.client.send(b.pub, packet)) << i;
  }
  ASSERT_TRUE(run_until(io_, [&] { return got.size() >= kCount; }));
  ASSERT_EQ(got.size(), kCount);
  for (std::size_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(got[i].size(), 1000 + i % 400) << i;
    EXPECT_EQ(got[i][0], static_cast<std::uint8_t>(i)) << i;
    EXPECT_EQ(got[i].back(), static_cast<std::uint8_t>(i + got[i].size() - 1)) << i;
  }
  EXPECT_TRUE(pending.empty());
  EXPECT_LT(batches, kCount) << "300 packets queued at once arrive in fewer reads than packets";
  EXPECT_EQ(server->stats().drop_queue_full, 0u);
}

// The client's own queue is bounded: a burst past max_queue_bytes is refused (and counted)
// rather than buffered without limit while the socket is slow.
TEST_F(RelayLoopbackTest, ClientQueueIsBounded) {
  auto server = make_server();
  RelayClient::Options options;
  options.max_queue_bytes = 64 * 1024;
  auto key = wg::crypto::generate_private_key(rng_);
  RelayClient client(io_, key, rng_, options);
  Node b(io_, rng_);
  server->set_members({wg::crypto::public_key_of(key), b.pub});
  client.connect({address_of(*server)}, keys_[0]);
  b.client.connect({address_of(*server)}, keys_[0]);
  ASSERT_TRUE(run_until(io_, [&] {
    return client.connected() && b.client.connected() && server->stats().admitted >= 2;
  }));
  std::size_t accepted = 0;
  for (int i = 0; i < 200; ++i) accepted += client.send(b.pub, Bytes(1400, 7)) ? 1 : 0;
  EXPECT_LT(accepted, 200u);
  EXPECT_LE(accepted * 1400, options.max_queue_bytes);
  EXPECT_EQ(client.stats().dropped_queue_full, 200u - accepted);
  ASSERT_TRUE(run_until(io_, [&] { return b.packets.size() >= accepted; }));
  // Drained, it takes packets again.
  EXPECT_TRUE(client.send(b.pub, Bytes(1400, 8)));
  client.close();
}

}  // namespace
}  // namespace knit::relay
