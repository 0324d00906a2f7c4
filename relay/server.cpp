#include "relay/server.hpp"

#include "base/log.hpp"

namespace knit::relay {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kTlsReadChunk = 16 * 1024;
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);
constexpr std::size_t kKeepWriteCapacity = 64 * 1024;

}  // namespace

struct Server::Connection {
  Connection(ConnId conn_id, asio::ip::tcp::socket socket)
      : id(conn_id), stream(std::move(socket)) {}
  Connection(ConnId conn_id, asio::io_context& io) : id(conn_id), stream(io) {}
  ConnId id;
  Stream stream;
  Bytes writing;  // the sealed frames of the write in flight (swapped with the core's queue)
  Bytes tls_buffer;
  bool write_pending = false;
  bool close_after = false;
  bool closed = false;
  bool sniffed = false;  // the first byte was looked at (or the stream is ours: a dial)
};

Server::Server(asio::io_context& io, const wg::PrivateKey& relay_key, Options options,
               Random& rng)
    : io_(io),
      options_(std::move(options)),
      core_(relay_key, options_.core, *this, rng),
      acceptor_(io),
      timer_(io),
      accept_retry_(io),
      stop_timer_(io),
      read_buffer_(kReadChunk) {}

Server::~Server() {
  stopping_ = true;
  drop_all();
}

void Server::start() {
  acceptor_.open(options_.listen.protocol());
  acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  if (options_.listen.address().is_v6()) acceptor_.set_option(asio::ip::v6_only(false));
  acceptor_.bind(options_.listen);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  acceptor_.non_blocking(true);
  accept_next();
  arm_timer(core_.on_timer(Clock::now()));
}

void Server::stop() {
  if (stopping_) return;
  stopping_ = true;
  std::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_.cancel();
  timer_.cancel();
  core_.shutdown(Clock::now());
  stop_timer_.expires_after(options_.stop_grace);
  stop_timer_.async_wait([this](std::error_code ec) {
    if (ec != asio::error::operation_aborted) drop_all();
  });
}

void Server::drop_all() {
  auto conns = std::move(conns_);
  conns_.clear();
  for (auto& [id, conn] : conns) {
    conn->closed = true;
    conn->stream.close();
    core_.on_closed(id, Clock::now());
  }
  timer_.cancel();
  stop_timer_.cancel();
}

void Server::set_members(const std::vector<NodeKey>& members) {
  core_.set_members(members, Clock::now());
}

void Server::set_relays(const std::vector<control::RelayInfo>& relays) {
  core_.set_relays(relays, Clock::now());
}

asio::ip::tcp::endpoint Server::local_endpoint() const {
  std::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void Server::arm_timer(Instant at) {
  timer_.expires_at(at);
  timer_.async_wait([this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || stopping_) return;
    arm_timer(core_.on_timer(Clock::now()));
  });
}

// ---------------------------------------------------------------- accepting

void Server::accept_next() {
  acceptor_.async_accept([this](std::error_code ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || stopping_) return;
    if (ec) {
      // Out of descriptors (EMFILE) and the like: back off briefly, keep serving the others.
      log(LogLevel::warn, "knit-relay", "accept failed: ", ec.message());
      accept_retry_.expires_after(kAcceptRetry);
      accept_retry_.async_wait([this](std::error_code error) {
        if (!error && !stopping_) accept_next();
      });
      return;
    }
    std::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    const asio::ip::tcp::endpoint peer = socket.remote_endpoint(ignored);
    const asio::ip::address from = peer.address();
    const IpAddress source = from.is_v4() ? IpAddress::v4(from.to_v4().to_uint())
                                          : IpAddress::v6(from.to_v6().to_bytes().data());
    const ConnId id = core_.on_accept(Clock::now(), source);
    auto conn = std::make_shared<Connection>(id, std::move(socket));
    conns_[id] = conn;
    start_reading(conn);
    accept_next();
  });
}

// ---------------------------------------------------------------- reading

void Server::start_reading(const ConnectionPtr& conn) {
  std::error_code ignored;
  conn->stream.socket().non_blocking(true, ignored);
  wait_readable(conn);
}

void Server::wait_readable(const ConnectionPtr& conn) {
  conn->stream.socket().async_wait(asio::socket_base::wait_read,
                                   [this, conn](std::error_code ec) {
                                     if (conn->closed) return;
                                     if (ec) return fail(conn);
                                     on_readable(conn);
                                   });
}

void Server::on_readable(const ConnectionPtr& conn) {
  std::error_code ec;
  if (!conn->sniffed) {
    std::uint8_t first = 0;
    const std::size_t n =
        conn->stream.socket().receive(asio::buffer(&first, 1), asio::socket_base::message_peek, ec);
    if (ec == asio::error::would_block) return wait_readable(conn);
    if (ec || n == 0) return fail(conn);
    conn->sniffed = true;
    if (first == kTlsHandshakeRecord && options_.tls) {
      conn->stream.socket().non_blocking(false, ec);
      conn->stream.use_tls(*options_.tls)
          .async_handshake(asio::ssl::stream_base::server, [this, conn](std::error_code error) {
            if (conn->closed) return;
            if (error) return fail(conn);
            conn->tls_buffer.resize(kTlsReadChunk);
            read_tls(conn);
          });
      return;
    }
  }
  // One chunk per readiness, so a busy sender cannot starve the others.
  const std::size_t n = conn->stream.socket().read_some(asio::buffer(read_buffer_), ec);
  if (ec == asio::error::would_block) return wait_readable(conn);
  if (ec) return fail(conn);
  feed(conn, ByteSpan(read_buffer_.data(), n));
  if (!conn->closed) wait_readable(conn);
}

void Server::read_tls(const ConnectionPtr& conn) {
  conn->stream.async_read_some(asio::buffer(conn->tls_buffer),
                               [this, conn](std::error_code ec, std::size_t n) {
                                 if (conn->closed) return;
                                 if (ec) return fail(conn);
                                 feed(conn, ByteSpan(conn->tls_buffer.data(), n));
                                 if (!conn->closed) read_tls(conn);
                               });
}

void Server::feed(const ConnectionPtr& conn, ByteSpan bytes) {
  in_read_ = true;
  core_.on_bytes(conn->id, bytes, Clock::now());
  in_read_ = false;
  flush_deferred();
}

// ---------------------------------------------------------------- writing

void Server::want_write(ConnId id) {
  if (in_read_) {
    deferred_.push_back(id);  // the core asks once per connection until it is written
    return;
  }
  const auto it = conns_.find(id);
  if (it == conns_.end() || it->second->write_pending || it->second->closed) return;
  pump(it->second);
}

void Server::flush_deferred() {
  // By index: a pump may fail a connection, and the core may then queue for others.
  for (std::size_t i = 0; i < deferred_.size(); ++i) want_write(deferred_[i]);
  deferred_.clear();
}

void Server::pump(const ConnectionPtr& conn) {
  const ServerCore::Take take = core_.take_output(conn->id, conn->writing);
  if (conn->writing.empty()) {
    // Idle again: a burst's buffer is not kept for the connection's life.
    if (conn->writing.capacity() > kKeepWriteCapacity) Bytes().swap(conn->writing);
    if (take == ServerCore::Take::close_after) finish(conn);
    return;
  }
  conn->close_after = take == ServerCore::Take::close_after;
  conn->write_pending = true;
  // Every frame queued since the last write, in one write (the frames are batched per write;
  // the kernel coalesces them into as few segments as it can).
  conn->stream.async_write(asio::buffer(conn->writing), [this, conn](std::error_code ec, std::size_t) {
    conn->write_pending = false;
    if (conn->closed) return;
    if (ec) return fail(conn);
    if (conn->close_after) return finish(conn);
    pump(conn);
  });
}

void Server::finish(const ConnectionPtr& conn) {
  if (conn->closed) return;
  conn->closed = true;
  conn->stream.close();
  conns_.erase(conn->id);
  core_.on_closed(conn->id, Clock::now());
  if (stopping_ && conns_.empty()) drop_all();
}

void Server::fail(const ConnectionPtr& conn) { finish(conn); }

void Server::close(ConnId id) {
  const auto it = conns_.find(id);
  if (it == conns_.end()) return;
  ConnectionPtr conn = it->second;
  conn->closed = true;
  conn->stream.close();
  conns_.erase(it);
}

// ---------------------------------------------------------------- dialing peer relays

void Server::dial(ConnId id, const control::RelayInfo& relay) {
  auto conn = std::make_shared<Connection>(id, io_);
  conn->sniffed = true;
  conns_[id] = conn;
  // Posted: the core is in the middle of a call and must not be re-entered.
  asio::post(io_, [this, conn, info = std::make_shared<control::RelayInfo>(relay)] {
    dial_next(conn, info, 0);
  });
}

void Server::dial_next(const ConnectionPtr& conn, std::shared_ptr<control::RelayInfo> relay,
                       std::size_t index) {
  if (conn->closed) return;
  if (index >= relay->addresses.size()) {
    log(LogLevel::debug, "knit-relay", "cannot reach relay ", relay->name);
    return fail(conn);
  }
  const control::HostPort& target = relay->addresses[index];
  auto resolver = std::make_shared<asio::ip::tcp::resolver>(io_);
  resolver->async_resolve(
      target.host, std::to_string(target.port), asio::ip::resolver_base::numeric_service,
      [this, conn, relay, index, resolver](std::error_code ec,
                                           asio::ip::tcp::resolver::results_type results) {
        if (conn->closed) return;
        if (ec) return dial_next(conn, relay, index + 1);
        asio::async_connect(
            conn->stream.socket(), results,
            [this, conn, relay, index](std::error_code error, const asio::ip::tcp::endpoint&) {
              if (conn->closed) return;
              if (error) {
                std::error_code ignored;
                conn->stream.socket().close(ignored);
                return dial_next(conn, relay, index + 1);
              }
              std::error_code ignored;
              conn->stream.socket().set_option(asio::ip::tcp::no_delay(true), ignored);
              log(LogLevel::info, "knit-relay", "linked to relay ", relay->name, " at ",
                  relay->addresses[index].to_string());
              core_.on_dialed(conn->id, Clock::now());
              if (!conn->closed) start_reading(conn);
            });
      });
}

}  // namespace knit::relay
