#include "wg/device.hpp"

#include <algorithm>
#include <cstring>

#include "wg/crypto.hpp"
#include "wg/ip_header.hpp"
#include "wg/messages.hpp"

namespace knit::wg {

Device::Device(Transport& transport, TunSink& tun, Random& rng, DeviceConfig config)
    : transport_(&transport), tun_(tun), rng_(rng), config_(config), scratch_(kMaxDatagramSize + kFrameTailroom) {}

Device::~Device() { remove_all_peers(); }

// ---------------------------------------------------------------- configuration

void Device::set_private_key(const std::optional<PrivateKey>& key) {
  if (key && !key->is_zero()) {
    if (!identity_.empty() && identity_.private_key.equals(key->span())) return;
    identity_.set(*key);
    cookie_checker_.configure(identity_.public_key);
    // A peer with our own public key would be ourselves: wireguard-go drops it too.
    remove_peer(identity_.public_key);
  } else {
    if (identity_.empty()) return;
    identity_ = LocalIdentity{};
  }
  reconfigure_handshakes();
}

void Device::reconfigure_handshakes() {
  for (auto& [key, peer] : peers_) {
    zero_peer_keys(*peer);
    peer->handshake.configure(identity_, peer->public_key, peer->preshared_key);
  }
}

Peer* Device::find_peer(const PublicKey& key) {
  auto it = peers_.find(key);
  return it == peers_.end() ? nullptr : it->second.get();
}

Peer* Device::add_peer(const PublicKey& key, Now now) {
  if (Peer* existing = find_peer(key)) return existing;
  if (!identity_.empty() && key == identity_.public_key) return nullptr;
  if (peers_.size() >= config_.max_peers) return nullptr;
  auto peer = std::make_unique<Peer>(key, rng_);
  peer->handshake.configure(identity_, key, peer->preshared_key);
  peer->cookie_macs.configure(key);
  (void)now;
  Peer* raw = peer.get();
  peers_.emplace(key, std::move(peer));
  peer_order_.push_back(key);
  return raw;
}

void Device::remove_peer(const PublicKey& key) {
  auto it = peers_.find(key);
  if (it == peers_.end()) return;
  Peer& peer = *it->second;
  zero_peer_keys(peer);
  peer.timers.stop();
  allowed_ips_.remove_value(&peer);
  peer_order_.erase(std::find(peer_order_.begin(), peer_order_.end(), key));
  peers_.erase(it);
}

void Device::remove_all_peers() {
  while (!peer_order_.empty()) remove_peer(peer_order_.back());
}

void Device::set_preshared_key(Peer& peer, const PresharedKey& psk) {
  if (peer.preshared_key.equals(psk.span())) return;
  peer.preshared_key = psk;
  peer.handshake.configure(identity_, peer.public_key, peer.preshared_key);
}

void Device::set_endpoint(Peer& peer, const Endpoint& endpoint) { peer.endpoint = endpoint; }

void Device::set_persistent_keepalive(Peer& peer, std::chrono::seconds interval, Now now) {
  peer.timers.set_persistent_keepalive(interval, now.mono);
}

void Device::add_allowed_ip(Peer& peer, const IpPrefix& prefix) { allowed_ips_.insert(prefix, &peer); }

void Device::clear_allowed_ips(Peer& peer) { allowed_ips_.remove_value(&peer); }

std::vector<IpPrefix> Device::allowed_ips_of(const Peer& peer) const {
  return allowed_ips_.prefixes_of(const_cast<Peer*>(&peer));
}

void Device::reset_sessions() {
  for (auto& [key, peer] : peers_) {
    zero_peer_keys(*peer);
    peer->staged.clear();
  }
}

// ---------------------------------------------------------------- indices

std::uint32_t Device::new_index(Peer* peer, Keypair* keypair) {
  // 2^32 indices and at most three keypairs plus one handshake per peer: a collision is rare,
  // and each retry is independent, so this loop ends after a try or two.
  for (;;) {
    std::uint32_t index = static_cast<std::uint32_t>(rng_.next_u64());
    if (index == 0) continue;
    if (indices_.try_emplace(index, IndexEntry{peer, keypair}).second) return index;
  }
}

void Device::retire(const Retired& retired) {
  for (int i = 0; i < retired.count; ++i) indices_.erase(retired.indices[i]);
}

void Device::zero_peer_keys(Peer& peer) {
  peer.keypairs.clear([this](std::uint32_t index) { indices_.erase(index); });
  if (peer.handshake.state() != Handshake::State::zeroed) indices_.erase(peer.handshake.local_index());
  peer.handshake.clear();
  peer.sent_lastminute_handshake = false;
}

// ---------------------------------------------------------------- sending

void Device::send_to_peer(Peer& peer, ByteSpan datagram) {
  if (!peer.endpoint) {
    ++stats_.tx_no_endpoint;
    return;
  }
  transport_->send(peer, std::span<const ByteSpan>(&datagram, 1));
  peer.tx_bytes += datagram.size();
}

void Device::on_tun_packet(Now now, MutableByteSpan frame, std::size_t packet_size) {
  CryptoJob job;
  if (!prepare_seal(now, frame, packet_size, job)) return;
  run_crypto(job);
  finish_seal(now, job);
}

bool Device::prepare_seal(Now now, MutableByteSpan frame, std::size_t packet_size, CryptoJob& job) {
  if (frame.size() < kFrameHeadroom + packet_size + kFrameTailroom) {
    ++stats_.tx_bad_packet;
    return false;
  }
  auto header = parse_ip_header(frame.subspan(kFrameHeadroom, packet_size));
  if (!header) {
    ++stats_.tx_bad_packet;
    return false;
  }
  std::optional<Peer*> found = header->version == 4 ? allowed_ips_.lookup_v4(header->destination)
                                                    : allowed_ips_.lookup_v6(header->destination);
  if (!found) {
    ++stats_.tx_no_route;
    return false;
  }
  Peer& peer = **found;
  if (!peer.endpoint) {
    ++stats_.tx_no_endpoint;
    return false;
  }
  Keypair* keypair = peer.keypairs.current();
  if (keypair != nullptr && keypair->can_send(now.mono)) {
    fill_seal_job(peer, *keypair, frame, packet_size, job);
    job.check_rekey = true;
    return true;
  }
  stage_packet(peer, frame.subspan(kFrameHeadroom, packet_size));
  initiate_handshake(peer, now);
  return false;
}

void Device::fill_seal_job(Peer& peer, Keypair& keypair, MutableByteSpan frame, std::size_t packet_size,
                           CryptoJob& job) {
  // Whitepaper §5.4.6: pad to a multiple of 16, but never past the MTU.
  std::size_t padded = (packet_size + kPaddingMultiple - 1) / kPaddingMultiple * kPaddingMultiple;
  if (padded > mtu_) padded = std::max(packet_size, mtu_);
  std::uint8_t* body = frame.data() + kFrameHeadroom;
  std::memset(body + packet_size, 0, padded - packet_size);

  std::uint8_t* header = frame.data();
  header[0] = static_cast<std::uint8_t>(MessageType::data);
  header[1] = header[2] = header[3] = 0;
  store_le32(header + 4, keypair.remote_index);
  // Counters are taken here, on the loop, in the order packets leave (§5.4.6).
  const std::uint64_t counter = keypair.send_counter++;
  store_le64(header + 8, counter);
  job.kind = CryptoJob::Kind::seal;
  job.key = &keypair.send_key;
  job.body = body;
  job.size = static_cast<std::uint32_t>(padded);
  job.counter = counter;
  job.ok = false;
  job.plain_size = static_cast<std::uint32_t>(packet_size);
  job.datagram = frame.data();
  job.datagram_size = static_cast<std::uint32_t>(kDataHeaderSize + padded + kAuthTagSize);
  job.peer = &peer;
  job.keypair = peer.keypairs.share(&keypair);
  job.check_rekey = false;
}

void Device::finish_seal(Now now, CryptoJob& job) {
  Peer& peer = *job.peer;
  send_to_peer(peer, ByteSpan(job.datagram, job.datagram_size));
  if (job.plain_size > 0) peer.timers.data_sent(now.mono);
  peer.timers.any_authenticated_packet_sent(now.mono);
  peer.timers.any_authenticated_packet_traversal(now.mono);
  const bool rekey = job.check_rekey && job.keypair && job.keypair->wants_rekey_on_send(now.mono);
  job.reset();
  if (rekey) initiate_handshake(peer, now);
}

void Device::seal_and_send(Peer& peer, Keypair& keypair, MutableByteSpan frame,
                           std::size_t packet_size, Now now) {
  CryptoJob job;
  fill_seal_job(peer, keypair, frame, packet_size, job);
  run_crypto(job);
  finish_seal(now, job);
}

void Device::stage_packet(Peer& peer, ByteSpan packet) {
  if (peer.staged.size() >= kMaxStagedPackets) {
    peer.staged.pop_front();
    ++stats_.tx_staged_dropped;
  }
  peer.staged.emplace_back(packet.begin(), packet.end());
}

void Device::flush_staged(Peer& peer, Now now) {
  while (!peer.staged.empty()) {
    Keypair* keypair = peer.keypairs.current();
    if (keypair == nullptr || !keypair->can_send(now.mono)) return;
    const Bytes& packet = peer.staged.front();
    std::memcpy(scratch_.data() + kFrameHeadroom, packet.data(), packet.size());
    seal_and_send(peer, *keypair, scratch_, packet.size(), now);
    peer.staged.pop_front();
  }
}

void Device::send_keepalive(Peer& peer, Now now) {
  Keypair* keypair = peer.keypairs.current();
  if (keypair == nullptr || !keypair->can_send(now.mono)) {
    // No usable session: a keepalive is a reason to make one (as the kernel does).
    initiate_handshake(peer, now);
    return;
  }
  seal_and_send(peer, *keypair, scratch_, 0, now);
}

void Device::initiate_handshake(Peer& peer, Now now, bool is_retry) {
  if (identity_.empty() || !peer.endpoint) return;
  // §6.4: at most one initiation per REKEY_TIMEOUT, except the timer's own retries.
  if (!is_retry && peer.last_initiation_sent && now.mono - *peer.last_initiation_sent < kRekeyTimeout)
    return;
  if (!is_retry) peer.timers.reset_handshake_attempts();
  if (peer.handshake.state() != Handshake::State::zeroed) indices_.erase(peer.handshake.local_index());

  auto msg = std::span<std::uint8_t, kInitiationSize>(scratch_.data(), kInitiationSize);
  const std::uint32_t index = new_index(&peer, nullptr);
  if (!peer.handshake.create_initiation(msg, index, now.wall, rng_)) {
    indices_.erase(index);
    return;
  }
  peer.cookie_macs.add_macs(msg, now.mono);
  peer.last_initiation_sent = now.mono;
  ++stats_.handshake_initiations_sent;
  send_to_peer(peer, msg);
  peer.timers.any_authenticated_packet_traversal(now.mono);
  peer.timers.any_authenticated_packet_sent(now.mono);
  peer.timers.handshake_initiated(now.mono);
}

// ---------------------------------------------------------------- receiving

void Device::on_datagram(Now now, const Endpoint& from, MutableByteSpan datagram) {
  ++stats_.rx_datagrams;
  switch (classify(datagram)) {
    case Classified::initiation: return handle_initiation(now, from, datagram);
    case Classified::response: return handle_response(now, from, datagram);
    case Classified::cookie_reply: return handle_cookie_reply(now, datagram);
    case Classified::data: return handle_data(now, from, datagram);
    case Classified::too_short: ++stats_.rx_too_short; return;
    case Classified::unknown_type: ++stats_.rx_unknown_type; return;
    case Classified::bad_reserved: ++stats_.rx_bad_reserved; return;
    case Classified::bad_size: ++stats_.rx_bad_size; return;
  }
}

bool Device::under_load(Instant now) {
  // A sliding one-second window, estimated from the current and the previous fixed window.
  const Duration elapsed = now - load_window_start_;
  if (elapsed >= 1s) {
    load_previous_count_ = elapsed >= 2s ? 0 : load_window_count_;
    load_window_count_ = 0;
    load_window_start_ = now;
  }
  ++load_window_count_;
  const auto into = std::chrono::duration_cast<std::chrono::milliseconds>(now - load_window_start_);
  const std::uint64_t carried = std::uint64_t{load_previous_count_} * (1000 - std::min<std::int64_t>(into.count(), 1000)) / 1000;
  return force_under_load_ || carried + load_window_count_ > config_.under_load_handshakes_per_second;
}

bool Device::check_handshake_macs(Now now, const Endpoint& from, MutableByteSpan msg) {
  const bool loaded = under_load(now.mono);
  const MacCheck check = cookie_checker_.check(msg, from, now.mono, loaded);
  if (check == MacCheck::invalid_mac) {
    ++stats_.rx_invalid_mac;
    return false;
  }
  if (loaded && check != MacCheck::valid_mac_with_cookie) {
    // §5.4.7: under load, answer with a cookie instead of spending a DH on this sender.
    auto reply = std::span<std::uint8_t, kCookieReplySize>(scratch_.data(), kCookieReplySize);
    cookie_checker_.create_reply(reply, msg, sender_index(msg), from, now.mono, rng_);
    transport_->send_reply(from, reply);
    ++stats_.tx_cookie_replies;
    return false;
  }
  return true;
}

void Device::handle_initiation(Now now, const Endpoint& from, MutableByteSpan msg) {
  if (identity_.empty()) {
    ++stats_.rx_no_private_key;
    return;
  }
  if (!check_handshake_macs(now, from, msg)) return;
  ConsumedInitiation consumed;
  if (consume_initiation(identity_, msg.first<kInitiationSize>(), consumed) != HandshakeError::ok) {
    ++stats_.rx_handshake_failed;
    return;
  }
  Peer* peer = find_peer(consumed.remote_static);
  if (peer == nullptr) {
    ++stats_.rx_unknown_peer;
    return;
  }
  const std::uint32_t previous_index =
      peer->handshake.state() != Handshake::State::zeroed ? peer->handshake.local_index() : 0;
  switch (peer->handshake.accept_initiation(consumed, now.mono)) {
    case HandshakeError::ok: break;
    case HandshakeError::replayed_timestamp: ++stats_.rx_replayed_handshake; return;
    case HandshakeError::flood: ++stats_.rx_handshake_flood; return;
    default: ++stats_.rx_handshake_failed; return;
  }
  if (previous_index != 0) indices_.erase(previous_index);
  peer->endpoint = from;  // roaming: the latest authenticated source wins
  peer->rx_bytes += msg.size();
  peer->timers.any_authenticated_packet_received(now.mono);
  peer->timers.any_authenticated_packet_traversal(now.mono);

  auto response = std::span<std::uint8_t, kResponseSize>(scratch_.data(), kResponseSize);
  const std::uint32_t index = new_index(peer, nullptr);
  if (!peer->handshake.create_response(response, index, rng_)) {
    indices_.erase(index);
    ++stats_.rx_handshake_failed;
    return;
  }
  peer->cookie_macs.add_macs(response, now.mono);
  auto keys = peer->handshake.derive_session();
  if (!keys) {
    indices_.erase(index);
    return;
  }
  session_established(*peer, std::move(*keys), now);
  send_to_peer(*peer, response);
  peer->timers.any_authenticated_packet_traversal(now.mono);
  peer->timers.any_authenticated_packet_sent(now.mono);
}

void Device::handle_response(Now now, const Endpoint& from, MutableByteSpan msg) {
  if (identity_.empty()) {
    ++stats_.rx_no_private_key;
    return;
  }
  if (!check_handshake_macs(now, from, msg)) return;
  auto entry = indices_.find(receiver_index(msg));
  if (entry == indices_.end() || entry->second.keypair != nullptr) {
    ++stats_.rx_unknown_index;
    return;
  }
  Peer& peer = *entry->second.peer;
  if (peer.handshake.consume_response(msg.first<kResponseSize>()) != HandshakeError::ok) {
    ++stats_.rx_handshake_failed;
    return;
  }
  auto keys = peer.handshake.derive_session();
  if (!keys) {
    ++stats_.rx_handshake_failed;
    return;
  }
  peer.endpoint = from;
  peer.rx_bytes += msg.size();
  peer.timers.any_authenticated_packet_received(now.mono);
  peer.timers.any_authenticated_packet_traversal(now.mono);
  session_established(peer, std::move(*keys), now);
  // The initiator's session is confirmed: it records the handshake and sends at once, so the
  // responder learns the session works (staged packets, or else a keepalive).
  peer.timers.handshake_complete(now.mono);
  peer.last_handshake = now.wall;
  ++stats_.handshakes_completed;
  if (peer.staged.empty()) send_keepalive(peer, now);
  flush_staged(peer, now);
}

void Device::handle_cookie_reply(Now now, MutableByteSpan msg) {
  auto entry = indices_.find(receiver_index(msg));
  if (entry == indices_.end()) {
    ++stats_.rx_unknown_index;
    return;
  }
  if (entry->second.peer->cookie_macs.consume_reply(msg.first<kCookieReplySize>(), now.mono) !=
      CookieMacs::ReplyResult::ok)
    ++stats_.rx_bad_cookie_reply;
}

void Device::session_established(Peer& peer, SessionKeys&& keys, Now now) {
  const std::uint32_t index = keys.local_index;
  auto keypair = std::make_shared<Keypair>(std::move(keys), now.mono);
  Keypair* raw = keypair.get();
  retire(peer.keypairs.install(std::move(keypair)));
  indices_[index] = IndexEntry{&peer, raw};
  peer.sent_lastminute_handshake = false;
  peer.timers.session_derived(now.mono);
}

void Device::handle_data(Now now, const Endpoint& from, MutableByteSpan msg) {
  CryptoJob job;
  if (!fill_open_job(now, from, msg, job)) return;
  run_crypto(job);
  finish_open(now, job);
}

bool Device::is_data_message(ByteSpan datagram) { return classify(datagram) == Classified::data; }

bool Device::prepare_open(Now now, const Endpoint& from, MutableByteSpan datagram, CryptoJob& job) {
  if (!is_data_message(datagram)) {
    on_datagram(now, from, datagram);
    return false;
  }
  ++stats_.rx_datagrams;
  return fill_open_job(now, from, datagram, job);
}

bool Device::fill_open_job(Now now, const Endpoint& from, MutableByteSpan msg, CryptoJob& job) {
  auto entry = indices_.find(receiver_index(msg));
  if (entry == indices_.end() || entry->second.keypair == nullptr) {
    ++stats_.rx_unknown_index;
    return false;
  }
  Peer& peer = *entry->second.peer;
  Keypair& keypair = *entry->second.keypair;
  if (!keypair.can_receive(now.mono)) {
    ++stats_.rx_expired_keypair;
    return false;
  }
  job.kind = CryptoJob::Kind::open;
  job.key = &keypair.receive_key;
  job.body = msg.data() + kDataHeaderSize;
  job.size = static_cast<std::uint32_t>(msg.size() - kDataHeaderSize);
  job.counter = data_counter(msg);
  job.ok = false;
  job.plain_size = static_cast<std::uint32_t>(msg.size() - kDataHeaderSize - kAuthTagSize);
  job.datagram = msg.data();
  job.datagram_size = static_cast<std::uint32_t>(msg.size());
  job.peer = &peer;
  job.keypair = peer.keypairs.share(&keypair);
  job.from = from;
  job.check_rekey = false;
  return true;
}

void Device::finish_open(Now now, CryptoJob& job) {
  Peer& peer = *job.peer;
  // Keep the keypair until this function returns; the job lets go of it now.
  const std::shared_ptr<Keypair> held = std::move(job.keypair);
  job.reset();
  Keypair& keypair = *held;
  if (keypair.retired) {
    // Rotated out or zeroed by a packet finished before this one: its index is gone, so the
    // device drops this packet as it would have on arrival.
    ++stats_.rx_unknown_index;
    return;
  }
  if (!job.ok) {
    ++stats_.rx_decrypt_failed;
    return;
  }
  // RFC 6479 window, consulted only once the packet is known to be authentic, and in the order
  // the packets arrived.
  if (!keypair.replay.check_and_update(job.counter)) {
    ++stats_.rx_replayed_data;
    return;
  }
  bool rotated = false;
  retire(peer.keypairs.confirm(&keypair, rotated));
  if (rotated) {
    // The responder's session is confirmed by the initiator's first packet.
    peer.timers.handshake_complete(now.mono);
    peer.last_handshake = now.wall;
    ++stats_.handshakes_completed;
    flush_staged(peer, now);
  }
  if (!peer.endpoint || *peer.endpoint != job.from) peer.endpoint = job.from;  // roaming
  peer.rx_bytes += job.datagram_size;
  peer.timers.any_authenticated_packet_received(now.mono);
  peer.timers.any_authenticated_packet_traversal(now.mono);
  if (keypair.wants_rekey_on_receive(now.mono) && !peer.sent_lastminute_handshake) {
    peer.sent_lastminute_handshake = true;
    initiate_handshake(peer, now);
  }

  const std::size_t plain_size = job.plain_size;
  if (plain_size == 0) {
    ++stats_.rx_keepalives;
    return;
  }
  peer.timers.data_received(now.mono);
  MutableByteSpan body(job.body, plain_size);
  auto header = parse_ip_header(body);
  if (!header) {
    ++stats_.rx_bad_inner_packet;
    return;
  }
  // Cryptokey routing: the inner source must be one of this peer's allowed IPs.
  std::optional<Peer*> owner = header->version == 4 ? allowed_ips_.lookup_v4(header->source)
                                                    : allowed_ips_.lookup_v6(header->source);
  if (!owner || *owner != &peer) {
    ++stats_.rx_disallowed_source;
    return;
  }
  tun_.write_tun(body.first(header->total_length));
}

// ---------------------------------------------------------------- timers

void Device::on_timers(Now now) {
  for (const auto& key : peer_order_) {
    Peer& peer = *peers_.at(key);
    const TimerActions actions = peer.timers.poll(now.mono);
    if (actions.zero_keys) zero_peer_keys(peer);
    if (actions.give_up) {
      stats_.tx_staged_dropped += peer.staged.size();
      peer.staged.clear();
    }
    if (actions.send_initiation) {
      // A handshake that went unanswered may have left from an address this host no longer
      // has: let the OS choose the source again (the kernel module does the same).
      if (peer.endpoint) peer.endpoint->set_local(std::nullopt);
      initiate_handshake(peer, now, actions.initiation_is_retry);
    }
    if (actions.send_keepalive) send_keepalive(peer, now);
  }
}

std::optional<Instant> Device::next_deadline() const {
  std::optional<Instant> earliest;
  for (const auto& [key, peer] : peers_) {
    auto deadline = peer->timers.next_deadline();
    if (deadline && (!earliest || *deadline < *earliest)) earliest = deadline;
  }
  return earliest;
}

}  // namespace knit::wg
