// A relay's clients without sockets, for tests and benchmarks of relay::ServerCore on a manual
// clock: each Client is a ClientSession whose bytes are carried by hand to and from the core.
// FakeIo records what the core asked of its adapter. Failures of the client's own crypto throw
// std::runtime_error (a test reports it; nothing here depends on GoogleTest).
#pragma once

#include <memory>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "base/random.hpp"
#include "relay/client_session.hpp"
#include "relay/server_core.hpp"
#include "wg/crypto.hpp"

namespace knit::relay::testing {

using ConnId = ServerIo::ConnId;

struct FakeIo : ServerIo {
  std::set<ConnId> wants;
  std::set<ConnId> closed;
  std::vector<std::pair<ConnId, control::RelayInfo>> dials;
  void want_write(ConnId id) override { wants.insert(id); }
  void close(ConnId id) override { closed.insert(id); }
  void dial(ConnId id, const control::RelayInfo& relay) override { dials.emplace_back(id, relay); }
};

// Everything queued for a connection, as one byte string; *close_after when the core wants it
// closed after that.
Bytes pull(ServerCore& core, ConnId id, bool* close_after = nullptr) {
  Bytes out;
  const auto take = core.take_output(id, out);
  if (close_after != nullptr) *close_after = take == ServerCore::Take::close_after;
  return out;
}

struct Got {
  FrameType type;
  NodeKey key;  // src of recv, key of peer_gone
  Bytes packet;
  std::uint8_t reason = 0;
};

// A client of the core: its node key, a ClientSession and what it received.
class Client {
 public:
  // features: what the Hello offers (0: an agent from before split data frames).
  Client(Random& rng, ServerCore& core, Role role = Role::client,
         std::uint8_t features = kKnownFeatures)
      : rng_(rng),
        key_(wg::crypto::generate_private_key(rng)),
        pub_(wg::crypto::public_key_of(key_)),
        core_(core),
        role_(role),
        features_(features) {}

  const NodeKey& pub() const { return pub_; }
  const wg::PrivateKey& key() const { return key_; }
  ConnId id() const { return id_; }

  // Accept, handshake and (when admitted) the first Ping; returns the status.
  Admission connect(Instant now) {
    id_ = core_.on_accept(now);
    session_ = std::make_unique<ClientSession>(key_, core_.public_key(), role_);
    session_->set_offered_features(features_);
    Bytes m1;
    if (!session_->start(rng_, m1)) throw std::runtime_error("ClientSession::start failed");
    message1_ = m1;
    core_.on_bytes(id_, m1, now);
    pump(now);
    return status_;
  }
  // Moves the core's output for us into our session.
  void pump(Instant now) {
    const Bytes bytes = pull(core_, id_, &close_after_);
    ByteSpan input(bytes);
    while (!input.empty()) {
      const auto step = session_->feed(input);
      switch (step.kind) {
        case ClientSession::Step::Kind::admitted: {
          status_ = Admission::ok;
          Bytes ping;
          encode_ping(1, ping);
          send_frame(ping, now);
          break;
        }
        case ClientSession::Step::Kind::refused:
          status_ = step.result.status;
          break;
        case ClientSession::Step::Kind::bad_frame:
          ++bad_frames;
          break;
        case ClientSession::Step::Kind::failed:
          failed = true;
          break;
        case ClientSession::Step::Kind::frame: {
          Got got{step.frame.type, {}, {}, step.frame.reason};
          if (step.frame.type == FrameType::recv) got.key = step.frame.src;
          if (step.frame.type == FrameType::peer_gone) got.key = step.frame.dst;
          got.packet.assign(step.frame.packet.begin(), step.frame.packet.end());
          received.push_back(got);
          break;
        }
        case ClientSession::Step::Kind::run:
          ++runs;
          step.run.for_each([&](ByteSpan packet) {
            received.push_back(Got{FrameType::recv, step.run.key, Bytes(packet.begin(), packet.end())});
          });
          break;
        case ClientSession::Step::Kind::need_more:
          break;
      }
    }
  }
  void send_frame(ByteSpan frame, Instant now) {
    Bytes sealed;
    if (!session_->seal(frame, sealed)) throw std::runtime_error("ClientSession::seal failed");
    core_.on_bytes(id_, sealed, now);
  }
  void send(const NodeKey& dst, const Bytes& packet, Instant now) {
    Bytes frame;
    if (!encode_send(dst, packet, frame)) throw std::runtime_error("encode_send refused the packet");
    send_frame(frame, now);
  }
  // Packets to dst sealed back to back (as a relay link batches them), not yet given to the core.
  Bytes seal_sends(const NodeKey& dst, const std::vector<Bytes>& packets) {
    Bytes out;
    for (const Bytes& packet : packets)
      if (!session_->seal_send(dst, packet, out)) throw std::runtime_error("ClientSession::seal_send failed");
    if (!session_->flush_run()) throw std::runtime_error("ClientSession::flush_run failed");
    return out;
  }
  void feed_raw(ByteSpan bytes, Instant now) { core_.on_bytes(id_, bytes, now); }
  // Takes what the core queued for us into our session as a receiver does, keeping nothing;
  // returns the frames read (benchmarks: the cost of opening, without storing).
  std::size_t absorb(Bytes& scratch) {
    scratch.clear();
    core_.take_output(id_, scratch);
    ByteSpan input(scratch);
    std::size_t frames = 0;
    while (!input.empty()) {
      const auto step = session_->feed(input);
      if (step.kind == ClientSession::Step::Kind::frame) ++frames;
      else if (step.kind == ClientSession::Step::Kind::run) frames += step.run.count();
      else if (step.kind != ClientSession::Step::Kind::need_more) break;
    }
    return frames;
  }
  std::vector<Got> of(FrameType type) const {
    std::vector<Got> out;
    for (const Got& g : received)
      if (g.type == type) out.push_back(g);
    return out;
  }
  const Bytes& message1() const { return message1_; }
  ClientSession& session() { return *session_; }
  bool close_after() const { return close_after_; }

  std::vector<Got> received;
  std::size_t bad_frames = 0;  // frames from the core that did not parse (dropped)
  std::size_t runs = 0;        // runs received (their packets are in `received` as recv)
  bool failed = false;         // the session failed (its channel is closed)

 private:
  Random& rng_;
  wg::PrivateKey key_;
  NodeKey pub_;
  ServerCore& core_;
  Role role_;
  std::uint8_t features_;
  ConnId id_ = 0;
  std::unique_ptr<ClientSession> session_;
  Admission status_ = Admission::bad_hello;
  Bytes message1_;
  bool close_after_ = false;
};

// Members `clients`, each connected and admitted (the core's membership is set to them all);
// false when one is refused.
inline bool admit_all(ServerCore& core, const std::vector<Client*>& clients, Instant now) {
  KeySet members;
  for (Client* c : clients) members.insert(c->pub());
  std::vector<NodeKey> keys(members.begin(), members.end());
  core.set_members(keys, now);
  for (Client* c : clients)
    if (c->connect(now) != Admission::ok) return false;
  return true;
}

}  // namespace knit::relay::testing
