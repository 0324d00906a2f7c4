// The in-process coordinator fixture for the server tests: a Server on 127.0.0.1:0 with a
// temporary state directory, and `Agent`, a real TCP client speaking the Noise IK channel as
// knitd does (join, rejoin, apply maps and deltas). Included by one test file; the anonymous
// namespace keeps everything private to it.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <thread>
#include <vector>
#include "tests/support/temp_dir.hpp"
#include "base/random.hpp"
#include "control/channel.hpp"
#include "control/messages.hpp"
#include "control/peer_map.hpp"
#include "control/token.hpp"
#include "coordinator/server.hpp"
#include "coordinator/sqlite_store.hpp"
#include "coordinator/state_dir.hpp"
#include "coordinator/token_issue.hpp"
#include "wg/crypto.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using control::ErrorCode;
using SteadyClock = std::chrono::steady_clock;

constexpr UnixSeconds kStart = 1'700'000'000;

using knit::testing::TempDir;

ByteSpan bytes_of(std::string_view text) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

int connect_to(std::uint16_t port, int receive_buffer = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (receive_buffer > 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds within = 2000ms) {
  const auto until = SteadyClock::now() + within;
  while (!pred()) {
    if (SteadyClock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

bool write_all(int fd, ByteSpan data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

// Waits until the server closes fd (end of stream or reset), discarding what it sends first.
bool closed_by_server(int fd, std::chrono::milliseconds within) {
  const auto until = SteadyClock::now() + within;
  std::array<std::uint8_t, 4096> buffer{};
  while (SteadyClock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 1))) <= 0) continue;
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (n <= 0) return true;
  }
  return false;
}

// An agent as far as the control channel goes: connects, registers, and keeps the peer map it is
// sent up to date by applying every delta (a delta that does not apply marks the map broken).
class Agent {
 public:
  Agent(std::uint16_t port, const wg::PublicKey& coordinator, wg::PrivateKey node_key,
        int receive_buffer = 0)
      : node_key_(node_key),
        public_key_(wg::crypto::public_key_of(node_key)),
        channel_(control::Channel::initiator(node_key, coordinator)),
        fd_(connect_to(port, receive_buffer)) {}
  ~Agent() { disconnect(); }
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  void disconnect() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Sends `hello` as message 1 (a register request, or a relay_register when this plays a
  // relay) and returns message 2's payload.
  std::optional<control::Message> hello(const control::Message& message) {
    Bytes frame;
    if (channel_.start(rng_, bytes_of(control::encode(message)), frame) != control::ChannelError::ok)
      return std::nullopt;
    message1_ = frame;
    if (!write_all(fd_, frame)) return std::nullopt;
    auto event = next_event(3s);
    if (!event || event->kind != control::ChannelEvent::Kind::handshake_done) return std::nullopt;
    return control::to_message(control::parse_message(
        std::string_view(reinterpret_cast<const char*>(event->data.data()), event->data.size())));
  }

  // Sends message 1 and reads message 2.
  std::optional<control::RegisterResponse> join(const control::RegisterRequest& request) {
    auto answer = hello(request);
    auto* response = answer ? std::get_if<control::RegisterResponse>(&*answer) : nullptr;
    if (response == nullptr) return std::nullopt;
    return *response;
  }

  std::optional<control::RegisterResponse> join(std::optional<std::string> token,
                                                std::string hostname = "host",
                                                std::vector<std::string> features = {}) {
    control::RegisterRequest request;
    request.features = std::move(features);
    request.token = std::move(token);
    request.disco_key = public_key_;
    request.disco_key[0] ^= 0x55;
    request.hostname = std::move(hostname);
    request.os = "linux";
    request.version = "test";
    return join(request);
  }

  bool send(const control::Message& message) { return send_text(control::encode(message)); }
  bool send_text(std::string_view text) {
    Bytes frame;
    if (channel_.seal(bytes_of(text), frame) != control::ChannelError::ok) return false;
    return write_all(fd_, frame);
  }
  bool send_raw(ByteSpan bytes) { return write_all(fd_, bytes); }

  // The next message, after it updated the peer map; nullopt on timeout or a closed stream.
  std::optional<control::Message> next(std::chrono::milliseconds within = 3000ms) {
    auto event = next_event(within);
    if (!event || event->kind != control::ChannelEvent::Kind::message) return std::nullopt;
    auto message = control::to_message(control::parse_message(
        std::string_view(reinterpret_cast<const char*>(event->data.data()), event->data.size())));
    if (!message) {
      map_broken_ = true;
      return std::nullopt;
    }
    if (auto* page = std::get_if<control::PeerMapPage>(&*message)) {
      // Pages in order; the map is whole at the last one.
      if (page->index == 0) incoming_ = control::PeerMap{page->version, {}};
      else if (page->index != next_page_ || page->version != incoming_.version) map_broken_ = true;
      next_page_ = page->index + 1;
      incoming_.peers.insert(incoming_.peers.end(), page->peers.begin(), page->peers.end());
      ++pages_;
      if (next_page_ == page->count) {
        map_ = std::move(incoming_);
        control::sort_by_node_key(map_.peers);
        have_map_ = true;
        ++maps_;
      }
    } else if (auto* delta = std::get_if<control::PeerDelta>(&*message)) {
      if (!have_map_ || !control::apply_delta(map_, *delta)) map_broken_ = true;
    } else if (auto* relays = std::get_if<control::RelayMap>(&*message)) {
      relays_ = *relays;
    }
    return message;
  }

  // Reads messages until pred() holds; false on timeout or a closed stream.
  template <typename Pred>
  bool wait_until(Pred pred, std::chrono::milliseconds within = 3000ms) {
    const auto until = SteadyClock::now() + within;
    while (!pred()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
      if (left.count() <= 0) return false;
      if (!next(left) && closed_) return false;
    }
    return true;
  }

  template <typename T>
  std::optional<T> wait_for(std::chrono::milliseconds within = 3000ms) {
    std::optional<T> found;
    const auto until = SteadyClock::now() + within;
    while (!found && SteadyClock::now() < until) {
      auto message = next(std::chrono::duration_cast<std::chrono::milliseconds>(
          until - SteadyClock::now() + 1ms));
      if (!message) {
        if (closed_) break;
        continue;
      }
      if (auto* m = std::get_if<T>(&*message)) found = *m;
    }
    return found;
  }

  const control::PeerInfo* peer(const wg::PublicKey& key) const {
    for (const auto& p : map_.peers)
      if (p.node_key == key) return &p;
    return nullptr;
  }
  bool closed_by_server(std::chrono::milliseconds within = 3000ms) {
    return knit::coordinator::closed_by_server(fd_, within);
  }

  const wg::PrivateKey& node_key() const { return node_key_; }
  const wg::PublicKey& public_key() const { return public_key_; }
  const control::PeerMap& map() const { return map_; }
  int maps() const { return maps_; }    // whole maps received
  int pages() const { return pages_; }  // pages of them
  bool have_map() const { return have_map_; }
  bool map_broken() const { return map_broken_; }
  const control::RelayMap& relays() const { return relays_; }
  const Bytes& message1() const { return message1_; }
  int fd() const { return fd_; }

 private:
  std::optional<control::ChannelEvent> next_event(std::chrono::milliseconds within) {
    const auto until = SteadyClock::now() + within;
    for (;;) {
      if (in_at_ < in_.size()) {
        ByteSpan input(in_.data() + in_at_, in_.size() - in_at_);
        control::ChannelEvent event = channel_.feed(input);
        in_at_ = in_.size() - input.size();
        if (event.kind != control::ChannelEvent::Kind::need_more) return event;
      }
      in_.clear();
      in_at_ = 0;
      if (closed_ || fd_ < 0) return std::nullopt;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      std::array<std::uint8_t, 65536> buffer{};
      const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      in_.assign(buffer.begin(), buffer.begin() + n);
    }
  }

  SystemRandom rng_;
  wg::PrivateKey node_key_;
  wg::PublicKey public_key_;
  control::Channel channel_;
  int fd_;
  Bytes in_;
  std::size_t in_at_ = 0;
  bool closed_ = false;
  Bytes message1_;
  control::PeerMap map_;
  control::PeerMap incoming_;
  std::uint32_t next_page_ = 0;
  int maps_ = 0;
  int pages_ = 0;
  bool have_map_ = false;
  bool map_broken_ = false;
  control::RelayMap relays_;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = open_store(dir_.path());
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    auto admin = open_store(dir_.path());
    ASSERT_TRUE(admin);
    admin_ = std::move(*admin);
    auto mesh = store_->ensure_mesh(std::nullopt, rng_);
    ASSERT_TRUE(mesh);
    mesh_ = *mesh;
    coordinator_key_ = wg::crypto::generate_private_key(rng_);
    coordinator_public_ = wg::crypto::public_key_of(coordinator_key_);
  }
  void TearDown() override { stop(); }

  void start(ServerOptions options = {}) {
    options.now = [this] { return clock_.load(); };
    if (options.publish_delay == ServerOptions{}.publish_delay) options.publish_delay = 10ms;
    server_ = std::make_unique<Server>(io_, *store_, coordinator_key_, mesh_, server_rng_, options);
    server_->start(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    port_ = server_->local_endpoint().port();
    thread_ = std::thread([this] { io_.run(); });
  }
  void stop() {
    if (!server_) return;
    asio::post(io_, [this] { server_->stop(); });
    thread_.join();
    server_.reset();
  }

  // Runs f on the server's loop and returns what it returned.
  template <typename F>
  auto on_loop(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }
  ServerCounters counters() {
    return on_loop([this] { return server_->counters(); });
  }

  std::string token(TokenOptions options = {}) {
    auto issued = issue_token(*admin_, options, {control::HostPort{"127.0.0.1", port_}},
                              coordinator_public_, rng_, clock_.load());
    EXPECT_TRUE(issued) << (issued ? "" : issued.error().message);
    return issued ? issued->text : std::string();
  }
  std::string reusable_token() {
    TokenOptions options;
    options.reusable = true;
    return token(options);
  }

  std::unique_ptr<Agent> agent() {
    return std::make_unique<Agent>(port_, coordinator_public_,
                                   wg::crypto::generate_private_key(rng_));
  }
  // A joined agent that has its first full map.
  std::unique_ptr<Agent> joined(const std::string& join_token, std::string hostname) {
    auto a = agent();
    auto response = a->join(join_token, std::move(hostname));
    EXPECT_TRUE(response && response->ok);
    EXPECT_TRUE(a->wait_until([&] { return a->have_map(); }));
    return a;
  }

  TempDir dir_;
  SystemRandom rng_;
  SystemRandom server_rng_;
  std::unique_ptr<Store> store_;  // the server's connection
  std::unique_ptr<Store> admin_;  // what the admin CLI would open
  MeshSettings mesh_;
  wg::PrivateKey coordinator_key_;
  wg::PublicKey coordinator_public_{};
  std::atomic<UnixSeconds> clock_{kStart};
  asio::io_context io_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

// ---- joining ----

}  // namespace
}  // namespace knit::coordinator
