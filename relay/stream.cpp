#include "relay/stream.hpp"

#include <stdexcept>

#include "control/host_port.hpp"

namespace knit::relay {

std::shared_ptr<asio::ssl::context> make_server_tls(const std::filesystem::path& cert_file,
                                                    const std::filesystem::path& key_file) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
  std::error_code ec;
  context->use_certificate_chain_file(cert_file.string(), ec);
  if (ec)
    throw std::runtime_error("cannot load the TLS certificate " + cert_file.string() + ": " +
                             ec.message());
  context->use_private_key_file(key_file.string(), asio::ssl::context::pem, ec);
  if (ec)
    throw std::runtime_error("cannot load the TLS key " + key_file.string() + ": " + ec.message());
  return context;
}

std::shared_ptr<asio::ssl::context> make_client_tls() {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
  context->set_verify_mode(asio::ssl::verify_none);
  return context;
}

std::optional<DialAddress> parse_dial_address(std::string_view text) {
  DialAddress out;
  constexpr std::string_view kTls = "tls://";
  if (text.substr(0, kTls.size()) == kTls) {
    out.tls = true;
    text.remove_prefix(kTls.size());
  }
  const auto parsed = control::HostPort::parse(text);
  if (!parsed) return std::nullopt;
  out.host = parsed->host;
  out.port = parsed->port;
  return out;
}

std::string to_string(const DialAddress& address) {
  return (address.tls ? "tls://" : "") + control::HostPort{address.host, address.port}.to_string();
}

}  // namespace knit::relay
