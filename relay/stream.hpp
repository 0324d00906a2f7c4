// A relay connection's byte stream: a TCP socket, optionally wrapped in TLS. TLS here only lets
// the relay sit on port 443 behind middleboxes that pass nothing else: the Noise channel inside
// authenticates both ends, so a client does not verify the certificate (a self-signed one is
// fine) and the relay accepts plain and TLS clients on the same port (frame.hpp: it tells them
// apart by the first byte).
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace knit::relay {

// The first byte of a TLS record carrying a handshake (RFC 8446 §5.1: ContentType 22).
inline constexpr std::uint8_t kTlsHandshakeRecord = 0x16;

// Server side: certificate chain and private key in PEM. Throws std::runtime_error with a
// message naming the file when either cannot be loaded.
std::shared_ptr<asio::ssl::context> make_server_tls(const std::filesystem::path& cert_file,
                                                    const std::filesystem::path& key_file);
// Client side: TLS 1.2 or later, no certificate verification (see above).
std::shared_ptr<asio::ssl::context> make_client_tls();

class Stream {
 public:
  using Tls = asio::ssl::stream<asio::ip::tcp::socket&>;

  explicit Stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
  explicit Stream(asio::io_context& io) : socket_(io) {}

  asio::ip::tcp::socket& socket() { return socket_; }
  bool is_tls() const { return tls_ != nullptr; }
  // Wraps the socket in TLS; call before the protocol reads or writes anything.
  Tls& use_tls(asio::ssl::context& context) {
    tls_ = std::make_unique<Tls>(socket_, context);
    return *tls_;
  }
  Tls& tls() { return *tls_; }

  template <typename Buffers, typename Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      asio::async_write(*tls_, buffers, std::forward<Handler>(handler));
    } else {
      asio::async_write(socket_, buffers, std::forward<Handler>(handler));
    }
  }

  template <typename Handler>
  void async_read_some(asio::mutable_buffer buffer, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffer, std::forward<Handler>(handler));
    } else {
      socket_.async_read_some(buffer, std::forward<Handler>(handler));
    }
  }

  // Closes the socket; pending operations end with operation_aborted. No TLS close_notify: the
  // Noise channel above has its own end (a closing frame).
  void close() {
    std::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

 private:
  asio::ip::tcp::socket socket_;
  std::unique_ptr<Tls> tls_;
};

// "tls://host:port" or "host:port" (also "[v6]:port"): the address and whether to use TLS.
struct DialAddress {
  std::string host;
  std::uint16_t port = 0;
  bool tls = false;
};
// nullopt when the text is not one of those forms.
std::optional<DialAddress> parse_dial_address(std::string_view text);
// The inverse: "tls://[2001:db8::1]:443".
std::string to_string(const DialAddress& address);

}  // namespace knit::relay
