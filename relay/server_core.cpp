#include "relay/server_core.hpp"

#include <algorithm>
#include <array>

#include "control/channel.hpp"
#include "relay/client_session.hpp"
#include "wg/crypto.hpp"
#include "wg/noise.hpp"

namespace knit::relay {
namespace {

// Bytes a frame takes in a queue once sealed: the length header and the AEAD tag.
constexpr std::size_t kSealOverhead = control::kFrameHeaderSize + control::kAeadTagSize;
// An empty queue keeps at most this much storage: a burst's buffer is not kept by an idle client.
constexpr std::size_t kKeepQueueCapacity = 64 * 1024;
// Message 1 with the largest Hello we read; anything declaring more is refused unread.
constexpr std::size_t kMaxMessage1 = wg::noise::IkHandshake::message1_size(kMaxHelloSize);
constexpr std::size_t kMinMessage1 = wg::noise::IkHandshake::message1_size(0);

}  // namespace

struct ServerCore::Conn {
  enum class Phase {
    dialing,    // outbound: waiting for TCP
    handshake,  // waiting for message 1 (inbound) or 2 (outbound)
    answered,   // inbound, admitted in principle: waiting for the first transport message
    open,
    closing,    // flushing a last frame; nothing more is read
    gone,
  };
  ConnId id = 0;
  Phase phase = Phase::handshake;
  bool outbound = false;
  Role role = Role::client;
  NodeKey key{};
  std::optional<control::Channel> channel;  // inbound
  std::unique_ptr<ClientSession> session;   // outbound
  Bytes out;                 // sealed frames, whole, waiting for take_output
  std::size_t out_frames = 0;
  Instant created{};
  Instant last_received{};
  Instant last_sent{};
  Instant closing_since{};
  std::array<std::uint8_t, control::kFrameHeaderSize> first{};  // message 1's length header
  std::size_t first_have = 0;
  bool split = false;  // split data frames granted (both directions)
  bool runs = false;   // data runs granted (both directions; clients only)

  std::size_t queued_frames() const { return out_frames; }
  std::size_t queued_bytes() const { return out.size(); }
  bool admitted() const { return phase == Phase::open; }
};

ServerCore::ServerCore(const wg::PrivateKey& relay_key, ServerConfig config, ServerIo& io,
                       Random& rng)
    : relay_key_(relay_key),
      public_key_(wg::crypto::public_key_of(relay_key)),
      config_(config),
      io_(io),
      rng_(rng),
      handshakes_(config.max_handshakes, config.max_handshakes_per_source) {}

ServerCore::~ServerCore() = default;

ServerCore::Conn* ServerCore::find(ConnId id) {
  const auto it = conns_.find(id);
  if (it == conns_.end() || it->second->phase == Conn::Phase::gone) return nullptr;
  return it->second.get();
}

ServerCore::Conn& ServerCore::add_conn(Instant now, bool outbound) {
  auto conn = std::make_unique<Conn>();
  conn->id = next_id_++;
  conn->outbound = outbound;
  conn->created = now;
  conn->last_received = now;
  conn->last_sent = now;
  Conn& ref = *conn;
  conns_.emplace(ref.id, std::move(conn));
  return ref;
}

void ServerCore::collect_dead() {
  for (ConnId id : dead_) conns_.erase(id);
  dead_.clear();
}

void ServerCore::remove(Conn& conn, Instant now, bool tell_io) {
  if (conn.phase == Conn::Phase::gone) return;
  handshakes_.release(conn.id);
  forget(conn, now);
  if (conn.outbound) {
    const auto peer = relays_.find(conn.key);
    if (peer != relays_.end() && peer->second.dialing == conn.id) {
      peer->second.dialing = 0;
      const int doublings = std::min(peer->second.failures, 5);
      ++peer->second.failures;
      Duration delay = std::min(config_.redial_max, config_.redial_min * (1 << doublings));
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(delay).count();
      delay += std::chrono::milliseconds(rng_.uniform(static_cast<std::uint32_t>(ms / 2 + 1)));
      peer->second.retry_at = now + delay;
    }
  }
  conn.phase = Conn::Phase::gone;
  Bytes().swap(conn.out);
  conn.out_frames = 0;
  dead_.push_back(conn.id);  // destroyed on the next entry, never under a caller's feet
  if (tell_io) io_.close(conn.id);
}

void ServerCore::forget(Conn& conn, Instant now) {
  (void)now;
  if (conn.phase != Conn::Phase::open) return;
  if (conn.role == Role::client) {
    const auto it = clients_.find(conn.key);
    if (it != clients_.end() && it->second == conn.id) {
      clients_.erase(it);
      announce(FrameType::absent, conn.key);
    }
  } else {
    const auto it = links_.find(conn.key);
    if (it != links_.end() && it->second == conn.id) {
      links_.erase(it);
      std::erase_if(routes_, [&](const auto& route) { return route.second == conn.id; });
    }
  }
}

void ServerCore::begin_close(Conn& conn, CloseReason reason, Instant now) {
  if (conn.phase != Conn::Phase::open && conn.phase != Conn::Phase::answered) {
    remove(conn, now, true);
    return;
  }
  forget(conn, now);
  conn.phase = Conn::Phase::closing;  // before queueing: the frame may be taken at once
  conn.closing_since = now;
  Bytes frame;
  encode_closing(reason, frame);
  if (!queue_frame(conn, frame, false) && conn.queued_frames() == 0) remove(conn, now, true);
}

bool ServerCore::has_room(const Conn& conn, std::size_t frame_size, bool is_packet) const {
  const std::size_t size = frame_size + kSealOverhead;
  const std::size_t scale = is_packet ? 1 : 2;  // control frames may use twice the room
  return conn.queued_bytes() + size <= config_.max_queue_bytes * scale &&
         conn.queued_frames() < config_.max_queue_frames * scale;
}

void ServerCore::queued(Conn& conn, bool was_empty) {
  conn.last_sent = now_;
  ++conn.out_frames;
  if (was_empty) io_.want_write(conn.id);
}

bool ServerCore::queue_frame(Conn& conn, ByteSpan frame, bool is_packet) {
  if (!has_room(conn, frame.size(), is_packet)) return false;
  const bool was_empty = conn.queued_frames() == 0;
  bool ok = false;
  if (conn.session) {
    ok = conn.session->seal_append(frame, conn.out);
  } else if (conn.channel) {
    ok = conn.channel->seal_append(frame, conn.out) == control::ChannelError::ok;
  }
  if (!ok) return false;
  queued(conn, was_empty);
  return true;
}

bool ServerCore::queue_recv_in_place(Conn& target, const NodeKey& src, MutableByteSpan raw) {
  // raw is a send frame (type | dst | packet) or the tail of a forward frame cut to the same
  // layout; a recv frame is type | src | packet.
  raw[0] = static_cast<std::uint8_t>(FrameType::recv);
  std::copy(src.begin(), src.end(), raw.begin() + 1);
  return queue_frame(target, raw, true);
}

bool ServerCore::queue_split(Conn& conn, ByteSpan head, ByteSpan packet) {
  if (!has_room(conn, head.size() + packet.size() + 1, true)) return false;
  const bool was_empty = conn.queued_frames() == 0;
  bool ok = false;
  if (conn.session) {
    ok = conn.session->seal_data(head, packet, conn.out);
  } else if (conn.channel) {
    ok = conn.channel->seal_split_append(head, packet, conn.out) == control::ChannelError::ok;
  }
  if (!ok) return false;
  queued(conn, was_empty);
  return true;
}

bool ServerCore::queue_recv(Conn& target, const NodeKey& src, ByteSpan packet,
                            MutableByteSpan recv_room) {
  if (target.split) {
    std::array<std::uint8_t, kDataHeadSize> head;
    head[0] = static_cast<std::uint8_t>(FrameType::recv);
    std::copy(src.begin(), src.end(), head.begin() + 1);
    return queue_split(target, head, packet);
  }
  if (recv_room.size() == 1 + kKeySize + packet.size())
    return queue_recv_in_place(target, src, recv_room);
  return encode_recv(src, packet, scratch_) && queue_frame(target, scratch_, true);
}

void ServerCore::queue_sealed(Conn& conn, ByteSpan sealed) {
  const bool was_empty = conn.queued_frames() == 0;
  conn.out.insert(conn.out.end(), sealed.begin(), sealed.end());
  queued(conn, was_empty);
}

ServerCore::Take ServerCore::take_output(ConnId id, Bytes& out) {
  out.clear();
  const auto it = conns_.find(id);
  if (it == conns_.end() || it->second->phase == Conn::Phase::gone) return Take::close_after;
  Conn& conn = *it->second;
  if (conn.out_frames != 0) {
    conn.out.swap(out);
    conn.out_frames = 0;
  } else if (conn.out.capacity() > kKeepQueueCapacity) {
    Bytes().swap(conn.out);  // idle: a burst's buffer is not kept for the connection's life
  }
  return conn.phase == Conn::Phase::closing && conn.queued_frames() == 0 ? Take::close_after
                                                                         : Take::keep;
}

// ---------------------------------------------------------------- membership and relay map

void ServerCore::set_members(const std::vector<NodeKey>& members, Instant now) {
  now_ = now;
  members_.emplace(members.begin(), members.end());
  std::vector<ConnId> cut;
  for (const auto& [key, id] : clients_)
    if (members_->count(key) == 0) cut.push_back(id);
  for (ConnId id : cut) {
    if (Conn* conn = find(id)) {
      ++stats_.cut_off;
      begin_close(*conn, CloseReason::removed, now);
    }
  }
  // Admitted in principle but not proven yet: refused when they speak (admit checks again).
}

void ServerCore::set_relays(const std::vector<control::RelayInfo>& relays, Instant now) {
  now_ = now;
  std::unordered_map<NodeKey, PeerRelay, KeyHash> next;
  for (const control::RelayInfo& info : relays) {
    if (info.node_key == public_key_) continue;
    PeerRelay peer;
    const auto old = relays_.find(info.node_key);
    if (old != relays_.end()) peer = old->second;
    peer.info = info;
    next[info.node_key] = std::move(peer);
  }
  std::vector<ConnId> stale;
  for (const auto& [id, conn] : conns_) {
    if (conn->phase == Conn::Phase::gone || conn->role != Role::relay) continue;
    if (next.count(conn->key) == 0) stale.push_back(id);
  }
  relays_ = std::move(next);
  for (ConnId id : stale)
    if (Conn* conn = find(id)) remove(*conn, now, true);
  dial_due(now);
}

// ---------------------------------------------------------------- connections

ServerCore::ConnId ServerCore::on_accept(Instant now, const IpAddress& source) {
  now_ = now;
  collect_dead();
  ++stats_.accepted;
  Conn& conn = add_conn(now, false);
  conn.channel.emplace(control::Channel::responder(relay_key_, kMaxNoiseFrame, kRelayPrologue));
  conn.channel->set_lend_messages(true);
  const ConnId id = conn.id;
  // Silent connections from a few sources never lock members out: they lose their own oldest.
  if (auto evicted = handshakes_.admit(id, source_key(source))) {
    ++stats_.handshake_evicted;
    if (Conn* victim = find(*evicted)) remove(*victim, now, true);
  }
  return id;
}

void ServerCore::on_dialed(ConnId id, Instant now) {
  now_ = now;
  Conn* conn = find(id);
  if (conn == nullptr || conn->phase != Conn::Phase::dialing) return;
  Bytes frame;
  if (!conn->session->start(rng_, frame)) return remove(*conn, now, true);
  conn->phase = Conn::Phase::handshake;
  conn->last_received = now;
  queue_sealed(*conn, frame);
}

void ServerCore::on_closed(ConnId id, Instant now) {
  now_ = now;
  if (Conn* conn = find(id)) remove(*conn, now, false);
}

void ServerCore::on_bytes(ConnId id, ByteSpan bytes, Instant now) {
  now_ = now;
  collect_dead();
  Conn* conn = find(id);
  if (conn == nullptr || conn->phase == Conn::Phase::closing || bytes.empty()) return;
  conn->last_received = now;
  if (conn->outbound) return feed_outbound(*conn, bytes, now);
  // Before the channel buffers message 1, its declared length must fit a handshake: a stranger
  // gets no 64 KiB buffer.
  if (conn->phase == Conn::Phase::handshake && conn->first_have < conn->first.size()) {
    const std::size_t n = std::min(conn->first.size() - conn->first_have, bytes.size());
    std::copy_n(bytes.begin(), n, conn->first.begin() + static_cast<std::ptrdiff_t>(conn->first_have));
    conn->first_have += n;
    if (conn->first_have == conn->first.size()) {
      const std::uint32_t length = load_be32(conn->first.data());
      if (length < kMinMessage1 || length > kMaxMessage1) {
        ++stats_.handshake_failed;
        if (length > kMaxMessage1) ++stats_.drop_oversize;
        return remove(*conn, now, true);
      }
    }
  }
  feed_inbound(*conn, bytes, now);
}

void ServerCore::feed_inbound(Conn& conn, ByteSpan input, Instant now) {
  while (!input.empty() && conn.phase != Conn::Phase::gone && conn.phase != Conn::Phase::closing) {
    control::ChannelEvent event = conn.channel->feed(input);
    switch (event.kind) {
      case control::ChannelEvent::Kind::need_more:
        return;
      case control::ChannelEvent::Kind::error:
        if (event.error == control::ChannelError::frame_too_large) ++stats_.drop_oversize;
        if (conn.phase == Conn::Phase::open)
          ++stats_.connection_errors;
        else
          ++stats_.handshake_failed;
        return remove(conn, now, true);
      case control::ChannelEvent::Kind::request:
        on_request(conn, event.data, now);
        break;
      case control::ChannelEvent::Kind::handshake_done:
        ++stats_.handshake_failed;
        return remove(conn, now, true);
      case control::ChannelEvent::Kind::message: {
        if (conn.phase == Conn::Phase::answered) {
          admit(conn, now);
          if (conn.phase != Conn::Phase::open) return;
        }
        if (event.run_tails > 0) {
          RunFrame run;
          const ParseError err = parse_run(event.lent, event.sealed_size, event.run_tails, run);
          if (err == ParseError::not_data) {
            ++stats_.drop_split_not_data;
          } else if (err != ParseError::ok) {
            ++stats_.drop_malformed;
          } else {
            on_client_run(conn, run);
          }
          break;
        }
        Frame frame;
        const ParseError err = event.split
                                   ? parse_split_frame(event.lent, event.sealed_size, frame)
                                   : parse_frame(event.lent, frame);
        if (err == ParseError::unknown_type) {
          ++stats_.drop_unknown_type;
        } else if (err == ParseError::not_data) {
          ++stats_.drop_split_not_data;
        } else if (err != ParseError::ok) {
          ++stats_.drop_malformed;
        } else {
          on_frame(conn, frame, event.lent, now);
        }
        break;
      }
    }
  }
}

void ServerCore::on_request(Conn& conn, ByteSpan payload, Instant now) {
  const NodeKey key = conn.channel->remote_static();
  const std::optional<Hello> hello = parse_hello(payload);
  Admission admission = Admission::ok;
  if (!hello || hello->version != kRelayVersion ||
      (hello->role != Role::client && hello->role != Role::relay)) {
    admission = Admission::bad_hello;
    ++stats_.refused_bad_hello;
  } else if (hello->role == Role::client) {
    if (!members_) {
      admission = Admission::membership_unknown;
      ++stats_.refused_membership_unknown;
    } else if (members_->count(key) == 0) {
      admission = Admission::not_member;
      ++stats_.refused_not_member;
    }
  } else if (key == public_key_) {
    admission = Admission::self;
    ++stats_.refused_not_relay;
  } else if (relays_.count(key) == 0) {
    admission = Admission::not_relay;
    ++stats_.refused_not_relay;
  }
  Result result;
  result.status = admission;
  // Grant what we support of what was offered (nothing to a refused connection).
  if (admission == Admission::ok && config_.split_data) {
    result.features = hello->features & kKnownFeatures;
    // Runs ride on split frames, and only a client's: relay links forward packet by packet.
    if ((result.features & kFeatureSplitData) == 0 || hello->role != Role::client || !config_.data_runs)
      result.features &= static_cast<std::uint8_t>(~kFeatureDataRuns);
  }
  result.keepalive_s = static_cast<std::uint16_t>(
      std::chrono::duration_cast<std::chrono::seconds>(config_.keepalive).count());
  Bytes frame;
  if (conn.channel->answer(rng_, encode(result), frame) != control::ChannelError::ok) {
    ++stats_.handshake_failed;
    return remove(conn, now, true);
  }
  conn.key = key;
  if (admission != Admission::ok) {
    conn.phase = Conn::Phase::closing;  // the refusal goes out, then the connection closes
    conn.closing_since = now;
    queue_sealed(conn, frame);
    return;
  }
  conn.role = hello->role;
  conn.split = (result.features & kFeatureSplitData) != 0;
  conn.runs = (result.features & kFeatureDataRuns) != 0;
  conn.channel->set_split_frames(conn.split);
  conn.channel->set_run_frames(conn.runs);
  conn.phase = Conn::Phase::answered;
  queue_sealed(conn, frame);
}

void ServerCore::admit(Conn& conn, Instant now) {
  if (conn.role == Role::client) {
    if (!members_ || members_->count(conn.key) == 0) {  // removed since message 1
      ++stats_.cut_off;
      return begin_close(conn, CloseReason::removed, now);
    }
    conn.phase = Conn::Phase::open;
    handshakes_.release(conn.id);
    ++stats_.admitted;
    const auto old = clients_.find(conn.key);
    if (old != clients_.end()) {
      if (Conn* previous = find(old->second)) {
        ++stats_.replaced;
        clients_.erase(old);  // no absent: the key stays connected here
        begin_close(*previous, CloseReason::replaced, now);
      }
    }
    clients_[conn.key] = conn.id;
    announce(FrameType::present, conn.key);
    return;
  }
  if (relays_.count(conn.key) == 0) return remove(conn, now, true);
  conn.phase = Conn::Phase::open;
  handshakes_.release(conn.id);
  ++stats_.admitted;
  link_opened(conn, now);
}

// ---------------------------------------------------------------- outbound relay links

void ServerCore::dial_due(Instant now) {
  if (shutting_down_) return;
  for (auto& [key, peer] : relays_) {
    if (!(public_key_ < key) || peer.dialing != 0 || links_.count(key) != 0 || now < peer.retry_at)
      continue;
    Conn& conn = add_conn(now, true);
    conn.phase = Conn::Phase::dialing;
    conn.role = Role::relay;
    conn.key = key;
    conn.session = std::make_unique<ClientSession>(relay_key_, key, Role::relay);
    conn.session->set_offered_features(config_.split_data ? kFeatureSplitData : 0);  // no runs on links
    peer.dialing = conn.id;
    io_.dial(conn.id, peer.info);
  }
}

void ServerCore::feed_outbound(Conn& conn, ByteSpan input, Instant now) {
  while (!input.empty() && conn.phase != Conn::Phase::gone && conn.phase != Conn::Phase::closing) {
    ClientSession::Step step = conn.session->feed(input);
    switch (step.kind) {
      case ClientSession::Step::Kind::need_more:
        return;
      case ClientSession::Step::Kind::refused:
      case ClientSession::Step::Kind::failed:
        return remove(conn, now, true);
      case ClientSession::Step::Kind::admitted: {
        conn.phase = Conn::Phase::open;
        conn.split = conn.session->split_data();
        Bytes ping;  // proves the link before anything else (frame.hpp)
        encode_ping(rng_.next_u64(), ping);
        queue_frame(conn, ping, false);
        const auto peer = relays_.find(conn.key);
        if (peer != relays_.end()) peer->second.failures = 0;
        link_opened(conn, now);
        break;
      }
      case ClientSession::Step::Kind::frame: {
        // The frame's bytes: from its first byte (the type, just before any key) to the end of
        // its packet, in the session's buffer; only packet frames are forwarded in place.
        MutableByteSpan raw;
        if (!step.frame.packet.empty()) {
          const MutableByteSpan packet = conn.session->writable(step.frame.packet);
          const std::size_t head = step.frame.type == FrameType::forward ? 1 + 2 * kKeySize
                                                                         : 1 + kKeySize;
          if (!packet.empty()) raw = MutableByteSpan(packet.data() - head, packet.size() + head);
        }
        on_frame(conn, step.frame, raw, now);
        break;
      }
      case ClientSession::Step::Kind::run:  // never offered on a link: a relay must not send one
        stats_.drop_not_allowed += step.run.count();
        break;
      case ClientSession::Step::Kind::bad_frame:
        ++(step.parse == ParseError::unknown_type ? stats_.drop_unknown_type
           : step.parse == ParseError::not_data   ? stats_.drop_split_not_data
                                                  : stats_.drop_malformed);
        break;
    }
  }
}

void ServerCore::link_opened(Conn& conn, Instant now) {
  const auto old = links_.find(conn.key);
  if (old != links_.end() && old->second != conn.id) {
    if (Conn* previous = find(old->second)) begin_close(*previous, CloseReason::replaced, now);
  }
  links_[conn.key] = conn.id;
  send_present_list(conn);
}

void ServerCore::send_present_list(Conn& link) {
  std::vector<NodeKey> batch;
  for (const auto& [key, id] : clients_) {
    batch.push_back(key);
    if (batch.size() == kMaxKeysPerFrame) {
      encode_keys(FrameType::present, batch, scratch_);
      queue_frame(link, scratch_, false);
      batch.clear();
    }
  }
  if (!batch.empty() && encode_keys(FrameType::present, batch, scratch_))
    queue_frame(link, scratch_, false);
}

void ServerCore::announce(FrameType type, const NodeKey& key) {
  if (links_.empty()) return;
  Bytes frame;
  encode_keys(type, {key}, frame);
  for (const auto& [relay, id] : links_) {
    Conn* link = find(id);
    // A link that cannot take even control frames is stuck: the peer resyncs on a new one.
    if (link != nullptr && !queue_frame(*link, frame, false)) ++stats_.drop_queue_full;
  }
}

// ---------------------------------------------------------------- frames

void ServerCore::on_frame(Conn& conn, const Frame& frame, MutableByteSpan raw, Instant now) {
  (void)now;
  switch (frame.type) {
    case FrameType::keepalive:
    case FrameType::pong:
    case FrameType::closing:
      return;
    case FrameType::ping: {
      Bytes pong;
      encode_pong(frame.token, pong);
      if (!queue_frame(conn, pong, false)) ++stats_.drop_queue_full;
      return;
    }
    default:
      break;
  }
  if (conn.role == Role::client) return on_client_frame(conn, frame, raw);
  on_relay_frame(conn, frame, raw);
}

void ServerCore::on_client_frame(Conn& conn, const Frame& frame, MutableByteSpan raw) {
  if (frame.type != FrameType::send) {
    ++stats_.drop_not_allowed;
    return;
  }
  deliver(conn.key, frame.dst, frame.packet, conn, raw);
}

void ServerCore::on_client_run(Conn& conn, const RunFrame& run) {
  if (conn.role != Role::client || run.type != FrameType::send) {
    stats_.drop_not_allowed += run.count();
    return;
  }
  if (const auto local = clients_.find(run.key); local != clients_.end()) {
    Conn* target = find(local->second);
    // A run that does not fit whole goes packet by packet below: as much of it as fits.
    if (target != nullptr && target->runs && queue_recv_run(*target, conn.key, run)) {
      stats_.packets_local += run.count();
      stats_.bytes_local += run.packets.size();
      return;
    }
  }
  run.for_each([&](ByteSpan packet) { deliver(conn.key, run.key, packet, conn, {}); });
}

bool ServerCore::queue_recv_run(Conn& target, const NodeKey& src, const RunFrame& run) {
  const ByteSpan rest = run.after_head();
  if (!target.channel || !has_room(target, kDataHeadSize + rest.size() + 1, true)) return false;
  const bool was_empty = target.queued_frames() == 0;
  Bytes& out = target.out;
  const std::size_t at = out.size();
  out.resize(at + control::kFrameHeaderSize + 1 + kDataHeadSize + control::kAeadTagSize + rest.size());
  std::uint8_t* head = out.data() + at + control::kFrameHeaderSize + 1;
  head[0] = static_cast<std::uint8_t>(FrameType::recv);
  std::copy(src.begin(), src.end(), head + 1);
  std::copy(rest.begin(), rest.end(), head + kDataHeadSize + control::kAeadTagSize);
  if (target.channel->seal_run(out, at, kDataHeadSize) != control::ChannelError::ok) return false;
  queued(target, was_empty);
  return true;
}

void ServerCore::deliver(const NodeKey& src, const NodeKey& dst, ByteSpan packet, Conn& from,
                         MutableByteSpan recv_room) {
  if (const auto local = clients_.find(dst); local != clients_.end()) {
    Conn* target = find(local->second);
    if (target == nullptr) return;
    if (!queue_recv(*target, src, packet, recv_room)) {
      ++stats_.drop_queue_full;
      return;
    }
    ++stats_.packets_local;
    stats_.bytes_local += packet.size();
    return;
  }
  if (const auto route = routes_.find(dst); route != routes_.end()) {
    Conn* link = find(route->second);
    if (link == nullptr) return;
    bool queued_ok = false;
    if (link->split) {
      std::array<std::uint8_t, kForwardHeadSize> head;
      head[0] = static_cast<std::uint8_t>(FrameType::forward);
      std::copy(src.begin(), src.end(), head.begin() + 1);
      std::copy(dst.begin(), dst.end(), head.begin() + 1 + kKeySize);
      queued_ok = queue_split(*link, head, packet);
    } else if (encode_forward(src, dst, packet, scratch_)) {
      queued_ok = queue_frame(*link, scratch_, true);
    } else {
      return;
    }
    if (!queued_ok) {
      ++stats_.drop_queue_full;
      return;
    }
    ++stats_.packets_to_mesh;
    stats_.bytes_to_mesh += packet.size();
    return;
  }
  ++stats_.drop_no_route;
  encode_peer_gone(dst, GoneReason::not_connected, scratch_);
  if (queue_frame(from, scratch_, false)) ++stats_.peer_gone_sent;
}

void ServerCore::on_relay_frame(Conn& conn, const Frame& frame, MutableByteSpan raw) {
  switch (frame.type) {
    case FrameType::forward: {
      const auto local = clients_.find(frame.dst);
      Conn* target = local == clients_.end() ? nullptr : find(local->second);
      if (target == nullptr) {
        ++stats_.drop_mesh_no_client;
        return;
      }
      // type | src | dst | packet: the last 1 + 32 + packet bytes become type | src | packet.
      const MutableByteSpan room = raw.size() == 1 + 2 * kKeySize + frame.packet.size()
                                       ? raw.subspan(kKeySize)
                                       : MutableByteSpan{};
      if (!queue_recv(*target, frame.src, frame.packet, room)) {
        ++stats_.drop_queue_full;
        return;
      }
      ++stats_.packets_from_mesh;
      stats_.bytes_from_mesh += frame.packet.size();
      return;
    }
    case FrameType::present:
      for (std::size_t i = 0; i < frame.key_count(); ++i) routes_[frame.key(i)] = conn.id;
      return;
    case FrameType::absent:
      for (std::size_t i = 0; i < frame.key_count(); ++i) {
        const auto it = routes_.find(frame.key(i));
        if (it != routes_.end() && it->second == conn.id) routes_.erase(it);
      }
      return;
    default:
      ++stats_.drop_not_allowed;
      return;
  }
}

// ---------------------------------------------------------------- timers

Instant ServerCore::on_timer(Instant now) {
  now_ = now;
  collect_dead();
  std::vector<ConnId> ids;
  ids.reserve(conns_.size());
  for (const auto& [id, conn] : conns_) ids.push_back(id);
  for (ConnId id : ids) {
    Conn* conn = find(id);
    if (conn == nullptr) continue;
    switch (conn->phase) {
      case Conn::Phase::dialing:
      case Conn::Phase::handshake:
      case Conn::Phase::answered:
        if (now - conn->created >= config_.handshake_timeout) {
          if (!conn->outbound) ++stats_.handshake_timeouts;
          remove(*conn, now, true);
        }
        break;
      case Conn::Phase::open:
        if (now - conn->last_received >= config_.idle_timeout) {
          ++stats_.idle_timeouts;
          begin_close(*conn, CloseReason::idle, now);
        } else if (now - conn->last_sent >= config_.keepalive) {
          Bytes keepalive;
          encode_keepalive(keepalive);
          queue_frame(*conn, keepalive, false);
        }
        break;
      case Conn::Phase::closing:
        if (now - conn->closing_since >= config_.closing_grace) remove(*conn, now, true);
        break;
      case Conn::Phase::gone:
        break;
    }
  }
  dial_due(now);
  return now + config_.tick;
}

void ServerCore::shutdown(Instant now) {
  now_ = now;
  shutting_down_ = true;
  std::vector<ConnId> ids;
  for (const auto& [id, conn] : conns_) ids.push_back(id);
  for (ConnId id : ids)
    if (Conn* conn = find(id)) begin_close(*conn, CloseReason::shutting_down, now);
}

const Stats& ServerCore::stats() const {
  stats_.clients = clients_.size();
  stats_.relay_links = links_.size();
  stats_.remote_clients = routes_.size();
  std::uint64_t handshaking = 0;
  for (const auto& [id, conn] : conns_)
    if (conn->phase != Conn::Phase::open && conn->phase != Conn::Phase::closing &&
        conn->phase != Conn::Phase::gone)
      ++handshaking;
  stats_.handshaking = handshaking;
  return stats_;
}

}  // namespace knit::relay
