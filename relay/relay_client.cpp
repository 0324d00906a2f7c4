#include "relay/relay_client.hpp"

#include <openssl/ssl.h>


#include "base/log.hpp"
#include "relay/client_session.hpp"
#include "relay/stream.hpp"
#include "net/underlay_connect.hpp"

namespace knit::relay {
namespace {

// An idle link keeps at most this much output storage once a burst is written.
constexpr std::size_t kKeepWriteCapacity = 64 * 1024;

// One TCP (or TLS) connection and the buffers its pending operations use: handlers hold it, so
// closing never frees what an operation still touches.
struct Link {
  explicit Link(asio::io_context& io) : stream(io) {}
  Stream stream;
  Bytes read_buffer;
  Bytes arena;    // the frames of one read, opened in place (ClientSession::set_arena)
  Bytes writing;  // the write in flight: sealed frames back to back (swapped with the queue)
};

}  // namespace

std::string_view to_string(RelayClient::State state) {
  switch (state) {
    case RelayClient::State::stopped: return "stopped";
    case RelayClient::State::connecting: return "connecting";
    case RelayClient::State::connected: return "connected";
    case RelayClient::State::waiting: return "waiting";
  }
  return "stopped";
}

// Everything pending handlers touch, kept alive by them. A generation number tells a handler
// whether the connection it was started for is still the current one.
class RelayClient::Core : public std::enable_shared_from_this<Core> {
 public:
  Core(asio::io_context& io, const wg::PrivateKey& my_key, Random& rng, Options options)
      : io_(io),
        my_key_(my_key),
        rng_(rng),
        options_(options),
        resolver_(io),
        deadline_(io),
        ping_timer_(io),
        retry_timer_(io) {}

  void connect(std::vector<std::string> addresses, const NodeKey& relay_key);
  void close();
  bool send(const NodeKey& dst, ByteSpan packet);

  PacketHandler on_packet_;
  std::function<void()> on_batch_end_;
  StateHandler on_state_;
  PeerGoneHandler on_peer_gone_;
  State state_ = State::stopped;
  std::optional<Duration> rtt_;
  Stats stats_;
  std::string address_text_;

 private:
  bool current(std::uint64_t gen) const { return state_ != State::stopped && gen == generation_; }
  void begin_round();
  void try_address();
  void address_failed(const std::string& why);
  void lost(const std::string& why, Duration delay);
  void close_connection();
  void on_transport_ready(std::uint64_t gen);
  void read_next();
  void on_read(std::uint64_t gen, std::error_code ec, std::size_t n);
  void handle(const ClientSession::Step& step);
  void end_batch();
  void queue_frame(ByteSpan frame);
  void write_next();
  // Starts the next write once the caller's handler has returned, so that every frame queued
  // by this handler (a batch of packets from the TUN) goes in one write: written at once, the
  // batch's first packet would leave alone, as its own TCP segment and system call.
  void flush_soon();
  void send_ping();
  void arm_ping();
  void arm_deadline(Duration after, std::string why);
  Duration next_backoff();
  void notify(bool up, const std::string& detail) {
    if (on_state_) on_state_(up, detail);
  }

  asio::io_context& io_;
  wg::PrivateKey my_key_;
  Random& rng_;
  Options options_;
  std::vector<DialAddress> addresses_;
  NodeKey relay_key_{};
  asio::ip::tcp::resolver resolver_;
  asio::steady_timer deadline_;
  asio::steady_timer ping_timer_;
  asio::steady_timer retry_timer_;
  std::shared_ptr<asio::ssl::context> tls_context_;

  std::uint64_t generation_ = 0;
  std::size_t index_ = 0;
  int failures_ = 0;
  // Quick retries after a "not a member" refusal so far (reset on admission; see handle()).
  static constexpr int kQuickMemberRetries = 3;
  int quick_member_retries_ = 0;
  std::string round_error_;
  std::shared_ptr<Link> link_;
  std::unique_ptr<ClientSession> session_;
  Bytes output_;                // sealed frames waiting for the write in flight to finish
  std::size_t queued_bytes_ = 0;  // output_ and the write in flight
  bool write_pending_ = false;
  bool flush_posted_ = false;  // a flush_soon() is on its way
  Bytes scratch_;
  Instant last_received_{};
  std::uint64_t ping_token_ = 0;
  bool batch_open_ = false;  // packets were handed out since the last end_batch()
  Instant ping_sent_{};
};

void RelayClient::Core::connect(std::vector<std::string> addresses, const NodeKey& relay_key) {
  close();
  addresses_.clear();
  for (const std::string& text : addresses)
    if (auto parsed = parse_dial_address(text)) addresses_.push_back(std::move(*parsed));
  relay_key_ = relay_key;
  if (addresses_.empty()) return notify(false, "no valid relay address");
  failures_ = 0;
  quick_member_retries_ = 0;
  begin_round();
}

void RelayClient::Core::close() {
  ++generation_;
  state_ = State::stopped;
  close_connection();
  retry_timer_.cancel();
}

void RelayClient::Core::close_connection() {
  std::error_code ignored;
  resolver_.cancel();
  deadline_.cancel();
  ping_timer_.cancel();
  if (link_) link_->stream.close();
  link_.reset();  // pending handlers keep it alive until they run
  session_.reset();
  Bytes().swap(output_);
  queued_bytes_ = 0;
  write_pending_ = false;
  rtt_.reset();
  address_text_.clear();
}

void RelayClient::Core::begin_round() {
  index_ = 0;
  round_error_.clear();
  try_address();
}

void RelayClient::Core::try_address() {
  if (index_ >= addresses_.size()) {
    const Duration delay = next_backoff();
    return lost(round_error_, delay);
  }
  close_connection();
  const std::uint64_t gen = ++generation_;
  state_ = State::connecting;
  arm_deadline(options_.connect_timeout, "timed out");
  const DialAddress& target = addresses_[index_];
  resolver_.async_resolve(
      target.host, std::to_string(target.port), asio::ip::resolver_base::numeric_service,
      [self = shared_from_this(), gen](std::error_code ec,
                                       asio::ip::tcp::resolver::results_type results) {
        if (!self->current(gen)) return;
        if (ec) return self->address_failed(ec.message());
        self->link_ = std::make_shared<Link>(self->io_);
        // Marked: it stays on the underlay while an exit node carries the default route.
        net::async_connect_underlay(self->link_->stream.socket(), results,
                            [self, gen, link = self->link_](std::error_code error,
                                                            const asio::ip::tcp::endpoint&) {
                              if (!self->current(gen)) return;
                              if (error) return self->address_failed(error.message());
                              self->on_transport_ready(gen);
                            });
      });
}

void RelayClient::Core::on_transport_ready(std::uint64_t gen) {
  std::error_code ignored;
  link_->stream.socket().set_option(asio::ip::tcp::no_delay(true), ignored);
  const DialAddress& target = addresses_[index_];
  if (target.tls && !link_->stream.is_tls()) {
    if (!tls_context_) tls_context_ = make_client_tls();
    Stream::Tls& tls = link_->stream.use_tls(*tls_context_);
    SSL_set_tlsext_host_name(tls.native_handle(), target.host.c_str());  // SNI for proxies
    tls.async_handshake(asio::ssl::stream_base::client, [self = shared_from_this(), gen,
                                                         link = link_](std::error_code ec) {
      if (!self->current(gen)) return;
      if (ec) return self->address_failed("TLS: " + ec.message());
      self->on_transport_ready(gen);
    });
    return;
  }
  session_ = std::make_unique<ClientSession>(my_key_, relay_key_, options_.role);
  session_->set_offered_features(!options_.split_data ? 0
                                 : options_.data_runs ? kKnownFeatures
                                                      : kFeatureSplitData);
  Bytes frame;
  if (!session_->start(rng_, frame)) return address_failed(session_->error());
  arm_deadline(options_.handshake_timeout, "no answer to the handshake");
  link_->read_buffer.resize(std::max<std::size_t>(options_.read_chunk, 1024));
  // Room for a whole read's frames and one frame carried over from the read before it.
  link_->arena.reserve(link_->read_buffer.size() + 2 * kMaxNoiseFrame);
  session_->set_arena(&link_->arena);
  output_ = std::move(frame);
  queued_bytes_ = output_.size();
  write_next();
  read_next();
}

void RelayClient::Core::address_failed(const std::string& why) {
  const DialAddress& target = addresses_[index_];
  const std::string where = to_string(target);
  round_error_ += (round_error_.empty() ? "" : "; ") + where + ": " + why;
  ++index_;
  try_address();
}

void RelayClient::Core::lost(const std::string& why, Duration delay) {
  const bool was_connected = state_ == State::connected;
  close_connection();
  const std::uint64_t gen = ++generation_;
  state_ = State::waiting;
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen)) return;
    self->begin_round();
  });
  if (was_connected || !why.empty()) notify(false, why);
}

Duration RelayClient::Core::next_backoff() {
  Duration ceiling = options_.backoff_min;
  for (int i = 0; i < failures_ && ceiling < options_.backoff_max; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, options_.backoff_max);
  if (failures_ < 30) ++failures_;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(ceiling).count();
  const auto half = ms / 2;
  return std::chrono::milliseconds(half + rng_.uniform(static_cast<std::uint32_t>(ms - half + 1)));
}

void RelayClient::Core::arm_deadline(Duration after, std::string why) {
  const std::uint64_t gen = generation_;
  deadline_.expires_after(after);
  deadline_.async_wait([self = shared_from_this(), gen, why = std::move(why)](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen)) return;
    if (self->state_ == State::connected) return self->lost("relay connection dead: " + why,
                                                              self->options_.backoff_min);
    self->address_failed(why);
  });
}

// ---------------------------------------------------------------- reading

void RelayClient::Core::read_next() {
  const std::uint64_t gen = generation_;
  link_->stream.async_read_some(asio::buffer(link_->read_buffer),
                                [self = shared_from_this(), gen, link = link_](std::error_code ec,
                                                                             std::size_t n) {
                                  self->on_read(gen, ec, n);
                                });
}

void RelayClient::Core::on_read(std::uint64_t gen, std::error_code ec, std::size_t n) {
  if (!current(gen)) return;
  if (ec) {
    const std::string why = ec == asio::error::eof ? "the relay closed the connection"
                                                    : "relay connection failed: " + ec.message();
    if (state_ != State::connected) return address_failed(why);
    return lost(why, options_.backoff_min);
  }
  last_received_ = Clock::now();
  // Every frame of this read is opened into the link's arena, and the packets handed out stay
  // there until end_batch(): the receiver gets them as one batch.
  const std::shared_ptr<Link> link = link_;
  link->arena.clear();
  ByteSpan input(link->read_buffer.data(), n);
  while (!input.empty()) {
    if (link->arena.capacity() - link->arena.size() < kMaxNoiseFrame) {
      end_batch();
      if (!current(gen)) return;
      link->arena.clear();
    }
    const ClientSession::Step step = session_->feed(input);
    if (step.kind == ClientSession::Step::Kind::need_more) break;
    handle(step);
    if (!current(gen)) {  // the step ended the connection, or a callback closed us
      end_batch();        // what arrived before that is still delivered (the arena is alive)
      return;
    }
  }
  end_batch();
  if (current(gen)) read_next();
}

void RelayClient::Core::end_batch() {
  if (!batch_open_) return;
  batch_open_ = false;
  if (on_batch_end_) on_batch_end_();
}

void RelayClient::Core::handle(const ClientSession::Step& step) {
  using Kind = ClientSession::Step::Kind;
  switch (step.kind) {
    case Kind::need_more:
      return;
    case Kind::failed:
      if (state_ != State::connected) return address_failed(step.error);
      return lost("relay connection failed: " + step.error, options_.backoff_min);
    case Kind::refused: {
      // The membership may change: a node that has just joined is often refused because the
      // coordinator's delta reaches the relay a moment after the node's own join. So the
      // first retry comes within a second (the coordinator polls every 250 ms), then the usual
      // doubling slows a node that really is not a member down to backoff_max.
      round_error_ = "relay refused us: " + std::string(to_string(step.result.status));
      if (step.result.status == Admission::not_member && quick_member_retries_ < kQuickMemberRetries) {
        // The relay hears of a new member ~100 ms after the coordinator admits it: retry after
        // 100, 200, 400 ms before the usual backoff (the first packets wait on this).
        const Duration delay = std::chrono::milliseconds(100) * (1 << quick_member_retries_);
        ++quick_member_retries_;
        return lost(round_error_, delay);
      }
      failures_ = std::max(failures_, 1);
      return lost(round_error_, next_backoff());
    }
    case Kind::admitted: {
      state_ = State::connected;
      failures_ = 0;
      quick_member_retries_ = 0;
      ++stats_.sessions;
      address_text_ = to_string(addresses_[index_]);
      deadline_.cancel();
      send_ping();  // proves we hold the keys (frame.hpp) and measures the first rtt
      arm_ping();
      return notify(true, "connected to relay at " + address_text_);
    }
    case Kind::bad_frame:
      ++stats_.dropped_malformed;
      return;
    case Kind::run:
      // Packets from one node, in order, as if they had come one recv frame each. A relay
      // sends only recv runs; anything else is dropped, as a send frame from it would be.
      if (step.run.type != FrameType::recv) {
        stats_.dropped_malformed += step.run.count();
        return;
      }
      step.run.for_each([&, gen = generation_](ByteSpan packet) {
        if (generation_ != gen || !session_) return;  // a receiver closed us: the rest is dropped
        ++stats_.packets_received;
        stats_.bytes_received += packet.size();
        if (on_packet_) {
          batch_open_ = true;
          on_packet_(step.run.key, session_->writable(packet));
        }
      });
      return;
    case Kind::frame:
      break;
  }
  const Frame& frame = step.frame;
  if (frame.type != FrameType::recv) {
    const std::uint64_t gen = generation_;
    end_batch();  // in order: the packets before it first
    if (generation_ != gen || !session_) return;  // the batch's receiver closed us
  }
  switch (frame.type) {
    case FrameType::recv:
      ++stats_.packets_received;
      stats_.bytes_received += frame.packet.size();
      if (on_packet_) {
        batch_open_ = true;
        on_packet_(frame.src, session_->writable(frame.packet));
      }
      return;
    case FrameType::pong:
      if (frame.token == ping_token_ && ping_token_ != 0) {
        rtt_ = Clock::now() - ping_sent_;
        ping_token_ = 0;
      }
      return;
    case FrameType::ping:
      encode_pong(frame.token, scratch_);
      return queue_frame(scratch_);
    case FrameType::peer_gone:
      ++stats_.peer_gone;
      if (on_peer_gone_) on_peer_gone_(frame.dst);
      return;
    case FrameType::closing:
      return lost("the relay closed the connection: " +
                      std::string(to_string(static_cast<CloseReason>(frame.reason))),
                  options_.backoff_min);
    default:
      return;  // keepalive, or a relay-mesh frame a client has no use for
  }
}

// ---------------------------------------------------------------- writing

bool RelayClient::Core::send(const NodeKey& dst, ByteSpan packet) {
  if (state_ != State::connected) {
    ++stats_.dropped_not_connected;
    return false;
  }
  if (packet.empty() || packet.size() > kMaxPacketSize) {
    ++stats_.dropped_malformed;
    return false;
  }
  const std::size_t sealed = control::kFrameHeaderSize + 1 + kKeySize + packet.size() +
                             control::kAeadTagSize + 1;  // + 1: a split message's head size
  if (queued_bytes_ + sealed > options_.max_queue_bytes) {
    ++stats_.dropped_queue_full;
    return false;
  }
  // Sealed straight into the output buffer: no allocation, one copy of the packet.
  const std::size_t before = output_.size();
  if (!session_ || !session_->seal_send(dst, packet, output_)) {
    ++stats_.dropped_not_connected;
    return false;
  }
  queued_bytes_ += output_.size() - before;
  if (!write_pending_) flush_soon();
  ++stats_.packets_sent;
  stats_.bytes_sent += packet.size();
  return true;
}

void RelayClient::Core::queue_frame(ByteSpan frame) {
  const std::size_t before = output_.size();
  if (!session_ || !session_->seal_append(frame, output_)) return;
  queued_bytes_ += output_.size() - before;
  if (!write_pending_) flush_soon();
}

void RelayClient::Core::flush_soon() {
  if (flush_posted_) return;
  flush_posted_ = true;
  // Not tied to this connection's generation: what a new connection queued meanwhile waits on
  // this same flush (write_next() writes nothing without a link).
  asio::post(io_, [self = shared_from_this()] {
    self->flush_posted_ = false;
    if (self->state_ != State::stopped && !self->write_pending_) self->write_next();
  });
}

void RelayClient::Core::write_next() {
  if (!link_) return;
  Link& link = *link_;
  if (output_.empty()) {
    // Idle: the burst's buffers are not kept for the link's life.
    if (link.writing.capacity() > kKeepWriteCapacity) Bytes().swap(link.writing);
    if (output_.capacity() > kKeepWriteCapacity) Bytes().swap(output_);
    return;
  }
  // Everything sealed since the last write goes in this one (the open run sealed first); the
  // frames queued while it is in flight fill the other buffer.
  if (session_ && !session_->flush_run()) return lost("relay session failed: " + session_->error(), options_.backoff_min);
  if (output_.empty()) return;
  link.writing.clear();
  link.writing.swap(output_);
  const std::size_t batch = link.writing.size();
  write_pending_ = true;
  const std::uint64_t gen = generation_;
  link.stream.async_write(asio::buffer(link.writing), [self = shared_from_this(), gen, batch, keep = link_](
                                            std::error_code ec, std::size_t) {
    if (!self->current(gen)) return;
    self->write_pending_ = false;
    self->queued_bytes_ -= std::min(self->queued_bytes_, batch);
    if (ec) {
      if (self->state_ != State::connected) return self->address_failed(ec.message());
      return self->lost("relay connection failed: " + ec.message(), self->options_.backoff_min);
    }
    self->write_next();
  });
}

void RelayClient::Core::send_ping() {
  ping_token_ = rng_.next_u64() | 1;
  ping_sent_ = Clock::now();
  encode_ping(ping_token_, scratch_);
  queue_frame(scratch_);
}

void RelayClient::Core::arm_ping() {
  const std::uint64_t gen = generation_;
  ping_timer_.expires_after(options_.ping_interval);
  ping_timer_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen)) return;
    if (Clock::now() - self->last_received_ >= self->options_.dead_after)
      return self->lost("relay connection dead: nothing heard", self->options_.backoff_min);
    self->send_ping();
    self->arm_ping();
  });
}

// ---------------------------------------------------------------- the facade

RelayClient::RelayClient(asio::io_context& io, const wg::PrivateKey& my_key, Random& rng)
    : RelayClient(io, my_key, rng, Options{}) {}

RelayClient::RelayClient(asio::io_context& io, const wg::PrivateKey& my_key, Random& rng,
                         Options options)
    : core_(std::make_shared<Core>(io, my_key, rng, options)) {}

RelayClient::~RelayClient() { close(); }

void RelayClient::on_packet(PacketHandler handler) { core_->on_packet_ = std::move(handler); }
void RelayClient::on_state(StateHandler handler) { core_->on_state_ = std::move(handler); }
void RelayClient::on_batch_end(std::function<void()> handler) {
  core_->on_batch_end_ = std::move(handler);
}
void RelayClient::on_peer_gone(PeerGoneHandler handler) {
  core_->on_peer_gone_ = std::move(handler);
}

void RelayClient::connect(std::vector<std::string> addresses, const NodeKey& relay_key) {
  core_->connect(std::move(addresses), relay_key);
}

void RelayClient::close() { core_->close(); }

bool RelayClient::send(const NodeKey& dst, ByteSpan packet) { return core_->send(dst, packet); }

RelayClient::State RelayClient::state() const { return core_->state_; }
std::optional<Duration> RelayClient::rtt() const { return core_->rtt_; }
const RelayClient::Stats& RelayClient::stats() const { return core_->stats_; }
std::string RelayClient::address() const { return core_->address_text_; }

}  // namespace knit::relay
