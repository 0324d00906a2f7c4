#include "bench/coordinator_bench_agents.hpp"

#include <algorithm>
#include <charconv>
#include <deque>
#include <functional>
#include <future>
#include <stdexcept>
#include <string_view>

#include "control/channel.hpp"
#include "control/messages.hpp"
#include "control/peer_map.hpp"
#include "wg/crypto.hpp"

namespace knit::bench {

namespace {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

constexpr std::size_t kReadBufferSize = 256 * 1024;
constexpr int kReadsPerWakeup = 2;  // then let other sockets have a turn
constexpr auto kTick = 100ms;
constexpr int kTicksPerSweep = 10;  // join timeouts and pings: once a second
// How late the tick may run before no more joins start: past it the loop is behind on what
// the coordinator sent, and pings and handshakes would be late too.
constexpr auto kMaxLoopLag = 500ms;
constexpr auto kLoopCallTimeout = 120s;

std::int64_t ns_of(SteadyClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
SteadyClock::time_point time_of(std::int64_t ns) {
  return SteadyClock::time_point(std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::nanoseconds(ns)));
}

std::string_view text_of(const Bytes& bytes) {
  return std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}
ByteSpan bytes_of(std::string_view text) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

// A LAN address and a public one, as an agent behind a NAT reports them.
std::vector<Endpoint> endpoints_of(std::size_t index, std::uint64_t generation) {
  const std::string lan = "10." + std::to_string((index >> 16) & 255) + "." +
                          std::to_string((index >> 8) & 255) + "." + std::to_string(index & 255) +
                          ":41641";
  const std::string wan = "203.0.113." + std::to_string(index % 250 + 1) + ":" +
                          std::to_string(20000 + (index + generation) % 40000);
  return {*Endpoint::parse(lan), *Endpoint::parse(wan)};
}

}  // namespace

// ---- one agent ----

class SimAgent {
 public:
  enum class State { connecting, handshaking, joining, open, closed };

  SimAgent(Swarm& swarm, std::size_t index)
      : swarm_(swarm),
        index_(index),
        socket_(swarm.io_),
        key_(wg::crypto::generate_private_key(swarm.rng_)),
        public_key_(wg::crypto::public_key_of(key_)),
        channel_(control::Channel::initiator(key_, swarm.config_.coordinator_key)),
        started_at_(SteadyClock::now()) {
    if (index % swarm.config_.full_every == 0) table_ = std::make_unique<control::PeerTable>();
  }

  const control::PeerTable* table() const { return table_.get(); }

  void start() {
    const tcp::endpoint coordinator(asio::ip::address_v4::loopback(), swarm_.config_.port);
    socket_.async_connect(coordinator, [this](std::error_code ec) {
      if (state_ == State::closed) return;
      if (ec) return fail();
      std::error_code ignored;
      socket_.set_option(tcp::no_delay(true), ignored);
      socket_.non_blocking(true, ignored);
      register_node();
    });
  }

  void send(const control::Message& message) {
    if (state_ != State::open) return;
    Bytes frame;
    if (channel_.seal(bytes_of(control::encode(message)), frame) != control::ChannelError::ok)
      return fail();
    queue(std::move(frame));
  }

  // Ends the connection; `failed` before the agent had its map.
  void close() {
    if (state_ == State::closed) return;
    const bool was_open = state_ == State::open;
    state_ = State::closed;
    std::error_code ignored;
    socket_.close(ignored);
    if (was_open) swarm_.on_closed(*this);
  }

  std::size_t index() const { return index_; }
  const control::NodeKey& public_key() const { return public_key_; }
  State state() const { return state_; }
  bool is_open() const { return state_ == State::open; }
  const std::string& name() const { return name_; }
  std::uint64_t version() const { return version_; }
  std::size_t peers() const { return peers_; }
  SteadyClock::time_point started_at() const { return started_at_; }
  SteadyClock::time_point updated_at() const { return updated_at_; }
  SteadyClock::time_point last_sent() const { return last_sent_; }
  bool removed() const { return removed_; }

  // Gives up on the connection; a join under way counts as failed.
  void fail() {
    const State was = state_;
    close();
    if (was != State::open && was != State::closed) swarm_.on_failed(*this);
  }

  bool counted = false;  // reached the swarm's armed version

 private:
  void register_node() {
    state_ = State::handshaking;
    control::RegisterRequest request;
    request.token = swarm_.config_.token;
    swarm_.rng_.fill(request.disco_key);
    request.hostname = "bench-" + std::to_string(index_);
    request.os = "linux";
    request.version = "bench";
    request.endpoints = endpoints_of(index_, 0);
    Bytes frame;
    if (channel_.start(swarm_.rng_, bytes_of(control::encode(request)), frame) !=
        control::ChannelError::ok)
      return fail();
    queue(std::move(frame));
    wait_readable();
  }

  void queue(Bytes frame) {
    last_sent_ = SteadyClock::now();
    out_.push_back(std::move(frame));
    if (!writing_) write_next();
  }

  void write_next() {
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_.front()), [this](std::error_code ec, std::size_t) {
      writing_ = false;
      if (state_ == State::closed) return;
      if (ec) return fail();
      out_.pop_front();
      if (!out_.empty()) write_next();
    });
  }

  void wait_readable() {
    socket_.async_wait(tcp::socket::wait_read, [this](std::error_code ec) { on_readable(ec); });
  }

  void on_readable(std::error_code ec) {
    if (state_ == State::closed) return;
    if (ec) return fail();
    Bytes& buffer = swarm_.read_buffer_;
    for (int i = 0; i < kReadsPerWakeup; ++i) {
      const std::size_t n = socket_.read_some(asio::buffer(buffer), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec) return fail();  // end of stream or reset
      swarm_.totals_.bytes += n;
      ByteSpan input(buffer.data(), n);
      while (!input.empty()) {
        control::ChannelEvent event = channel_.feed(input);
        switch (event.kind) {
          case control::ChannelEvent::Kind::need_more:
            break;
          case control::ChannelEvent::Kind::handshake_done:
            on_response(event.data);
            break;
          case control::ChannelEvent::Kind::message:
            on_message(text_of(event.data));
            break;
          case control::ChannelEvent::Kind::request:
          case control::ChannelEvent::Kind::error:
            ++swarm_.totals_.unexpected;
            return fail();
        }
        if (state_ == State::closed) return;
      }
      if (n < buffer.size()) break;
    }
    wait_readable();
  }

  void on_response(const Bytes& payload) {
    auto parsed = control::parse_message(text_of(payload));
    const auto* response = std::get_if<control::RegisterResponse>(&parsed);
    if (response == nullptr || !response->ok) {
      ++swarm_.totals_.unexpected;
      return fail();
    }
    name_ = response->node.name;
    state_ = State::joining;
  }

  // Everything the coordinator sends is parsed in full, as knitd's session does; pages and
  // deltas move the agent's version and peer count (and, on every full_every-th agent, a real
  // PeerTable). A page or delta out of order counts as a gap.
  void on_message(std::string_view text) {
    control::ParseResult parsed = control::parse_message(text);
    if (auto* page = std::get_if<control::PeerMapPage>(&parsed)) {
      ++swarm_.totals_.pages;
      swarm_.totals_.map_bytes += text.size();
      if (page->index == 0) {
        incoming_version_ = page->version;
        incoming_peers_ = 0;
        next_page_ = 0;
        if (table_) incoming_ = control::PeerMap{page->version, {}};
      }
      if (page->index != next_page_ || page->version != incoming_version_) {
        ++swarm_.totals_.gaps;
        return fail();
      }
      ++next_page_;
      incoming_peers_ += page->peers.size();
      if (table_) incoming_.peers.insert(incoming_.peers.end(), page->peers.begin(), page->peers.end());
      if (next_page_ < page->count) return;
      ++swarm_.totals_.maps;
      version_ = incoming_version_;
      peers_ = incoming_peers_;
      if (table_ && !table_->reset(std::move(incoming_))) ++swarm_.totals_.unexpected;
      updated_at_ = SteadyClock::now();
      if (state_ == State::joining) {
        state_ = State::open;
        swarm_.on_joined(*this);
      }
      swarm_.on_updated(*this);
    } else if (auto* delta = std::get_if<control::PeerDelta>(&parsed)) {
      if (state_ != State::open) {
        ++swarm_.totals_.unexpected;
        return;
      }
      ++swarm_.totals_.deltas;
      swarm_.totals_.delta_bytes += text.size();
      swarm_.totals_.delta_peers += delta->added.size() + delta->changed.size() + delta->removed.size();
      if (delta->version != version_ + 1) ++swarm_.totals_.gaps;
      if (table_ && !table_->apply(*delta)) ++swarm_.totals_.table_misfits;
      version_ = delta->version;
      peers_ += delta->added.size();
      peers_ -= std::min(peers_, delta->removed.size());
      updated_at_ = SteadyClock::now();
      swarm_.on_updated(*this);
    } else if (std::holds_alternative<control::Pong>(parsed)) {
      ++swarm_.totals_.pongs;
    } else if (std::holds_alternative<control::RelayMap>(parsed)) {
    } else if (std::holds_alternative<control::ErrorMessage>(parsed)) {
      removed_ = true;  // the coordinator closes the session after it
    } else {
      ++swarm_.totals_.unexpected;
    }
  }

  Swarm& swarm_;
  std::size_t index_;
  tcp::socket socket_;
  wg::PrivateKey key_;
  control::NodeKey public_key_;
  control::Channel channel_;
  State state_ = State::connecting;
  std::string name_;
  std::uint64_t version_ = 0;
  std::size_t peers_ = 0;
  bool removed_ = false;
  std::unique_ptr<control::PeerTable> table_;  // on every full_every-th agent
  control::PeerMap incoming_;
  std::uint64_t incoming_version_ = 0;
  std::size_t incoming_peers_ = 0;
  std::uint32_t next_page_ = 0;
  SteadyClock::time_point started_at_;
  SteadyClock::time_point updated_at_{};
  SteadyClock::time_point last_sent_{};
  std::deque<Bytes> out_;
  bool writing_ = false;
};

// ---- the swarm ----

// Runs f on the loop and returns what it returned; throws when the loop does not get to it.
template <typename F>
auto Swarm::on_loop(F f) {
  if (!thread_.joinable()) throw std::runtime_error("the agents' loop was abandoned");
  std::packaged_task<decltype(f())()> task(std::move(f));
  auto result = task.get_future();
  asio::post(io_, [&task] { task(); });
  if (result.wait_for(kLoopCallTimeout) != std::future_status::ready) {
    // The task refers to this frame: it must not run after we leave.
    io_.stop();
    thread_.join();
    throw std::runtime_error("the agents' loop did not answer in time");
  }
  return result.get();
}

Swarm::Swarm(SwarmConfig config)
    : config_(std::move(config)),
      work_(asio::make_work_guard(io_)),
      tick_timer_(io_),
      read_buffer_(kReadBufferSize) {
  arm_tick();
  thread_ = std::thread([this] { io_.run(); });
}

Swarm::~Swarm() {
  try {
    on_loop([this] {
      launching_ = false;
      tick_timer_.cancel();
      for (auto& agent : agents_) agent->close();
      work_.reset();
      return 0;
    });
  } catch (const std::exception&) {
    // on_loop abandoned the loop and joined the thread.
  }
  // Every agent is closed; a handler that re-armed something on its way out would keep run()
  // from returning (the bench hung here now and then after printing its results).
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

void Swarm::launch() {
  while (launching_ && !behind_ && in_flight_ < config_.in_flight &&
         agents_.size() < join_until_) {
    agents_.push_back(std::make_unique<SimAgent>(*this, agents_.size()));
    ++in_flight_;
    agents_.back()->start();
  }
}

void Swarm::arm_tick() {
  tick_due_ = SteadyClock::now() + kTick;
  tick_timer_.expires_at(tick_due_);
  tick_timer_.async_wait([this](std::error_code ec) {
    if (!ec) tick();
  });
}

void Swarm::tick() {
  const auto now = SteadyClock::now();
  const bool was_behind = behind_;
  // No join started since the last tick.
  if (was_behind && launching_) throttled_ += now - last_tick_;
  last_tick_ = now;
  behind_ = now - tick_due_ > kMaxLoopLag;
  if (was_behind && !behind_) launch();
  if (++ticks_ % kTicksPerSweep == 0) sweep(now);
  arm_tick();
}

void Swarm::sweep(SteadyClock::time_point now) {
  // By index: a join given up launches the next agent, which may grow agents_.
  for (std::size_t i = 0, n = agents_.size(); i < n; ++i) {
    SimAgent* agent = agents_[i].get();
    switch (agent->state()) {
      case SimAgent::State::connecting:
      case SimAgent::State::handshaking:
      case SimAgent::State::joining:
        if (now - agent->started_at() > config_.join_timeout) agent->fail();
        break;
      case SimAgent::State::open:
        if (now - agent->last_sent() >= config_.ping_interval) {
          agent->send(control::Ping{ticks_});
          ++totals_.pings;
        }
        break;
      case SimAgent::State::closed:
        break;
    }
  }
}

void Swarm::on_joined(SimAgent&) {
  --in_flight_;
  ++joined_;
  last_join_ns_ = ns_of(SteadyClock::now());
  launch();
}

void Swarm::on_failed(SimAgent&) {
  --in_flight_;
  ++failed_;
  launch();
}

void Swarm::on_updated(SimAgent& agent) {
  if (!armed_ || agent.counted || agent.version() < target_version_) return;
  agent.counted = true;
  const std::int64_t now = ns_of(SteadyClock::now());
  if (reached_ == 0) first_ns_ = now;
  last_ns_ = now;
  arrivals_.push_back(now);
  ++reached_;
}

void Swarm::on_closed(SimAgent& agent) {
  ++totals_.closed_by_server;
  if (agent.removed()) ++totals_.removed;
  // An agent gone before it got there is no longer waited for.
  if (armed_ && !agent.counted) {
    agent.counted = true;
    --expected_;
  }
}

JoinReport Swarm::join(std::size_t n, SteadyClock::duration budget) {
  const std::size_t before_joined = joined_;
  const std::size_t before_failed = failed_;
  const auto started = on_loop([this, n] {
    join_until_ = agents_.size() + n;
    join_started_ = SteadyClock::now();
    throttled_ = {};
    launching_ = true;
    launch();
    return join_started_;
  });
  JoinReport report;
  report.started = started;
  auto settled = [&] { return joined_ + failed_ - before_joined - before_failed >= n; };
  const auto until = started + budget;
  while (!settled() && SteadyClock::now() < until) std::this_thread::sleep_for(5ms);
  if (!settled()) {
    report.budget_exhausted = true;
    on_loop([this] {
      launching_ = false;
      return 0;
    });
    // Those under way finish or time out.
    const auto grace = SteadyClock::now() + config_.join_timeout + 2s;
    while (on_loop([this] { return in_flight_; }) > 0 && SteadyClock::now() < grace)
      std::this_thread::sleep_for(20ms);
  }
  report.joined = joined_ - before_joined;
  report.failed = failed_ - before_failed;
  report.launched = on_loop([this] { return agents_.size(); });
  report.throttled = on_loop([this] { return throttled_; });
  if (report.joined > 0) report.elapsed = time_of(last_join_ns_) - started;
  return report;
}

std::size_t Swarm::verify_tables(const std::vector<control::NodeKey>& all) {
  return on_loop([this, &all] {
    std::size_t bad = 0;
    for (const auto& agent : agents_) {
      const control::PeerTable* table = agent->table();
      if (!agent->is_open() || table == nullptr) continue;
      // Everybody but itself.
      std::size_t expected = 0;
      for (const control::NodeKey& key : all) {
        if (key == agent->public_key()) continue;
        ++expected;
        if (table->find(key) == nullptr) {
          ++bad;
          break;
        }
      }
      if (table->size() != expected) ++bad;
    }
    return bad;
  });
}

std::vector<control::NodeKey> Swarm::open_keys() {
  return on_loop([this] {
    std::vector<control::NodeKey> out;
    for (const auto& agent : agents_)
      if (agent->is_open()) out.push_back(agent->public_key());
    return out;
  });
}

Consistency Swarm::consistency() {
  return on_loop([this] {
    Consistency c;
    bool first = true;
    for (const auto& agent : agents_) {
      if (!agent->is_open()) continue;
      ++c.open;
      if (first) {
        c.min_version = c.max_version = agent->version();
        c.min_peers = c.max_peers = agent->peers();
        first = false;
      }
      c.min_version = std::min(c.min_version, agent->version());
      c.max_version = std::max(c.max_version, agent->version());
      c.min_peers = std::min(c.min_peers, agent->peers());
      c.max_peers = std::max(c.max_peers, agent->peers());
      c.last_update = std::max(c.last_update, agent->updated_at());
    }
    return c;
  });
}

SwarmTotals Swarm::totals() {
  return on_loop([this] { return totals_; });
}

std::vector<std::size_t> Swarm::open_agents() {
  return on_loop([this] {
    std::vector<std::size_t> out;
    for (const auto& agent : agents_)
      if (agent->is_open()) out.push_back(agent->index());
    return out;
  });
}

std::string Swarm::name(std::size_t agent) {
  return on_loop([this, agent] { return agents_.at(agent)->name(); });
}

void Swarm::arm(std::uint64_t version, std::optional<std::size_t> excluded) {
  on_loop([this, version, excluded] {
    target_version_ = version;
    armed_ = true;
    arrivals_.clear();
    reached_ = 0;
    first_ns_ = 0;
    last_ns_ = 0;
    std::size_t expected = 0;
    for (auto& agent : agents_) {
      agent->counted = !agent->is_open() || (excluded && agent->index() == *excluded);
      if (!agent->counted) ++expected;
    }
    expected_ = expected;
    for (auto& agent : agents_) on_updated(*agent);
    return 0;
  });
}

Propagation Swarm::wait(SteadyClock::time_point since, SteadyClock::duration within) {
  const auto until = SteadyClock::now() + within;
  while (reached_ < expected_ && SteadyClock::now() < until) std::this_thread::sleep_for(1ms);
  return on_loop([this, since] {
    armed_ = false;
    Propagation p;
    p.reached = reached_;
    p.expected = expected_;
    p.complete = p.reached >= p.expected;
    if (p.reached > 0) {
      p.first = time_of(first_ns_) - since;
      p.last = time_of(last_ns_) - since;
      // The 99th percentile over every agent's arrival.
      std::vector<std::int64_t> sorted = arrivals_;
      std::sort(sorted.begin(), sorted.end());
      const std::size_t at = std::min(sorted.size() - 1, (sorted.size() * 99 + 99) / 100 - 1);
      p.p99 = time_of(sorted[at]) - since;
    }
    return p;
  });
}

SteadyClock::time_point Swarm::change_endpoints(std::size_t agent) {
  return on_loop([this, agent] {
    const auto now = SteadyClock::now();
    agents_.at(agent)->send(control::EndpointUpdate{endpoints_of(agent, ++endpoint_generation_)});
    return now;
  });
}

}  // namespace knit::bench
