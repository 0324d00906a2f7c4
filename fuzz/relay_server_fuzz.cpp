// The relay server core (relay/server_core.hpp) fed client bytes, in fast mode: two member
// clients, A and B, finish their Noise handshakes once; then each input drives what follows.
// The world is rebuilt when A's connection is gone (an input may legitimately kill it) and
// every kRebuildEvery runs.
//
// Operations (op u8 | length u16 | bytes[length]), by op % 8:
//   0, 5  bytes as a frame from A, sealed by A's session (the frame parser and routing)
//   1     `send` to B with bytes as the packet (forwarding); B must receive it as `recv` from A
//   6     a batch: bytes[1..] cut into packets of bytes[0] % 64 + 1 bytes (at most 48), sent to B sealed back
//         to back in one buffer (as a relay link batches them: one run when the relay granted
//         data runs) and fed in two reads cut where bytes[0] says; B must receive every packet,
//         in order (as one run when B has them too, else one by one)
//   2     bytes from a new, unauthenticated connection (the handshake parser), then it closes
//   3     op exactly 3: bytes appended raw to A's stream (corrupts it: the last operation on
//         this world, which is rebuilt for the next input); op exactly 11: a split message
//         from A (bytes[0] % 80 + 1 bytes of bytes[1..] sealed as its head, the rest as its
//         tail; A's relay granted them); other ops = 3 mod 8: as 0
//   4, 7  time passes (first byte: seconds, < 30) and on_timer runs; A and B then send a
//         keepalive, as live clients do, so the idle timeout ends only worlds that stop
// Every other world's B offers no features (an agent from before split data frames), so the core
// forwards A's split sends as whole frames and A's runs packet by packet to it; A always offers
// and gets split data frames and data runs.
// Properties: the core's output for A and B always decrypts and parses; a packet A sends to B
// arrives intact; queues stay bounded; a split message that is not a data head is never
// forwarded.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <vector>

#include "base/random.hpp"
#include "fuzz/fuzz_util.hpp"
#include "relay/client_session.hpp"
#include "relay/server_core.hpp"
#include "wg/crypto.hpp"

using namespace knit;
using namespace knit::relay;

namespace {

constexpr int kRebuildEvery = 20000;

struct Io : ServerIo {
  std::set<ConnId> closed;
  void want_write(ConnId) override {}
  void close(ConnId id) override { closed.insert(id); }
  void dial(ConnId, const control::RelayInfo&) override {}
};

struct Client {
  wg::PrivateKey key;
  NodeKey pub{};
  ServerIo::ConnId id = 0;
  std::unique_ptr<ClientSession> session;
  std::vector<Bytes> packets;  // recv'd packets
  std::uint8_t features = kKnownFeatures;
  bool over = false;
};

struct World {
  SeededRandom rng{3};
  Io io;
  wg::PrivateKey relay_key = wg::crypto::generate_private_key(rng);
  ServerCore core{relay_key, ServerConfig{.max_queue_bytes = 64 * 1024, .max_queue_frames = 64}, io, rng};
  Client a, b;
  Instant now{std::chrono::hours(1)};
  int runs = 0;

  explicit World(bool old_b) {
    b.features = old_b ? 0 : kKnownFeatures;
    for (Client* c : {&a, &b}) {
      c->key = wg::crypto::generate_private_key(rng);
      c->pub = wg::crypto::public_key_of(c->key);
    }
    core.set_members({a.pub, b.pub}, now);
    connect(a);
    connect(b);
  }

  void connect(Client& c) {
    c.id = core.on_accept(now);
    c.session = std::make_unique<ClientSession>(c.key, core.public_key(), Role::client);
    c.session->set_offered_features(c.features);
    Bytes m1;
    KNIT_FUZZ_CHECK(c.session->start(rng, m1));
    core.on_bytes(c.id, m1, now);
    pull(c);
    KNIT_FUZZ_CHECK(c.session->admitted());
    KNIT_FUZZ_CHECK(c.session->split_data() == (c.features != 0));
    Bytes ping;
    encode_ping(1, ping);
    send_frame(c, ping);
  }

  void send_frame(Client& c, ByteSpan frame) {
    Bytes sealed;
    KNIT_FUZZ_CHECK(c.session->seal(frame, sealed));
    core.on_bytes(c.id, sealed, now);
  }

  // Everything the core queued for c, through c's session: it must decrypt and parse.
  void pull(Client& c) {
    if (c.over) return;
    Bytes queued;
    const auto take = core.take_output(c.id, queued);
    {
      ByteSpan input(queued);
      while (!input.empty()) {
        const auto step = c.session->feed(input);
        KNIT_FUZZ_CHECK(step.kind != ClientSession::Step::Kind::failed);
        KNIT_FUZZ_CHECK(step.kind != ClientSession::Step::Kind::bad_frame);
        if (step.kind == ClientSession::Step::Kind::frame && step.frame.type == FrameType::recv)
          c.packets.emplace_back(step.frame.packet.begin(), step.frame.packet.end());
        if (step.kind == ClientSession::Step::Kind::run) {
          KNIT_FUZZ_CHECK(step.run.type == FrameType::recv);
          step.run.for_each([&](ByteSpan packet) { c.packets.emplace_back(packet.begin(), packet.end()); });
        }
        if (step.kind == ClientSession::Step::Kind::need_more) break;
      }
    }
    if (take == ServerCore::Take::close_after) {
      core.on_closed(c.id, now);
      c.over = true;
    }
    if (io.closed.count(c.id) != 0) c.over = true;
  }
};

std::unique_ptr<World> world;
int worlds = 0;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (!world || world->a.over || world->b.over || ++world->runs > kRebuildEvery)
    world = std::make_unique<World>(++worlds % 2 == 0);
  World& w = *world;
  fuzz::Reader in(data, size);
  int operations = 0;
  while (!in.empty() && ++operations <= 32 && !w.a.over && !w.b.over) {
    const auto [op, bytes] = fuzz::next_record(in, 4096);
    const unsigned kind = op == 3 ? 3u : op == 11 ? 11u : (op % 8 == 3 ? 0u : op % 8);
    switch (kind) {
      case 11: {
        if (bytes.size() < 2) break;
        const ByteSpan body = ByteSpan(bytes).subspan(1);
        const std::size_t head = std::min<std::size_t>(bytes[0] % 80 + 1, body.size());
        const std::uint64_t local = w.core.stats().packets_local;
        const std::uint64_t not_data = w.core.stats().drop_split_not_data;
        Bytes sealed;
        KNIT_FUZZ_CHECK(w.a.session->seal_split_unchecked(body.first(head), body.subspan(head), sealed));
        w.core.on_bytes(w.a.id, sealed, w.now);
        Frame frame;
        const ParseError parsed = parse_split_frame(body, head, frame);
        if (parsed == ParseError::not_data) KNIT_FUZZ_CHECK(w.core.stats().drop_split_not_data == not_data + 1);
        if (parsed != ParseError::ok) KNIT_FUZZ_CHECK(w.core.stats().packets_local == local);
        break;
      }
      case 0:
      case 5:
        w.send_frame(w.a, bytes);
        break;
      case 6: {
        if (bytes.size() < 2) break;
        const ByteSpan body = ByteSpan(bytes).subspan(1);
        // At most 48 packets: within B's queue bound (64 frames), whatever else waits there.
        const std::size_t piece = std::max<std::size_t>(bytes[0] % 64 + 1, (body.size() + 47) / 48);
        std::vector<Bytes> sent;
        Bytes batch;
        for (std::size_t at = 0; at < body.size(); at += piece) {
          const ByteSpan packet = body.subspan(at, std::min(piece, body.size() - at));
          KNIT_FUZZ_CHECK(w.a.session->seal_send(w.b.pub, packet, batch));
          sent.emplace_back(packet.begin(), packet.end());
        }
        KNIT_FUZZ_CHECK(w.a.session->flush_run());
        const std::size_t cut = (static_cast<std::size_t>(bytes[0]) * 131) % (batch.size() + 1);
        w.core.on_bytes(w.a.id, ByteSpan(batch).first(cut), w.now);
        w.core.on_bytes(w.a.id, ByteSpan(batch).subspan(cut), w.now);
        w.b.packets.clear();
        w.pull(w.b);
        KNIT_FUZZ_CHECK(w.b.packets == sent);
        break;
      }
      case 1: {
        if (bytes.empty()) break;
        Bytes frame;
        KNIT_FUZZ_CHECK(encode_send(w.b.pub, bytes, frame));
        w.send_frame(w.a, frame);
        w.b.packets.clear();
        w.pull(w.b);
        if (w.b.packets.size() != 1 || w.b.packets[0] != bytes) {
          std::fprintf(stderr, "B got %zu packets for one send of %zu bytes (a over %d, b over %d)\n",
                       w.b.packets.size(), bytes.size(), w.a.over, w.b.over);
          KNIT_FUZZ_CHECK(false);
        }
        break;
      }
      case 2: {
        const auto id = w.core.on_accept(w.now);
        w.core.on_bytes(id, bytes, w.now);
        Bytes out;
        (void)w.core.take_output(id, out);
        w.core.on_closed(id, w.now);
        break;
      }
      case 3:
        // A's stream is no longer one the session can continue (a partial frame may swallow
        // what it seals next): this input ends here and the next one gets a fresh world.
        w.core.on_bytes(w.a.id, bytes, w.now);
        w.pull(w.a);
        w.a.over = true;
        break;
      default: {
        w.now += std::chrono::seconds(bytes.empty() ? 1 : bytes[0] % 30);
        (void)w.core.on_timer(w.now);
        Bytes keepalive;
        encode_keepalive(keepalive);
        w.send_frame(w.a, keepalive);
        w.send_frame(w.b, keepalive);
        break;
      }
    }
    w.pull(w.a);
    w.pull(w.b);
    KNIT_FUZZ_CHECK(w.core.connections() <= 2 + 1);
  }
  return 0;
}
