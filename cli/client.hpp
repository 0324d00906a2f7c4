// The knit CLI's side of the control socket: connect, send one request line, read one answer
// line, with a deadline. Failures are CliError, one line saying what to do.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>

#include "localapi/protocol.hpp"

namespace knit::cli {

inline constexpr const char* kDefaultControlSocket = "/run/knit/knitd.sock";

class CliError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class KnitdConnection {
 public:
  // Throws CliError when knitd is not there (or not ours to talk to).
  explicit KnitdConnection(std::string socket_path);
  ~KnitdConnection();
  KnitdConnection(const KnitdConnection&) = delete;
  KnitdConnection& operator=(const KnitdConnection&) = delete;

  // One request, its answer. An ErrorReply is returned, not thrown; transport failures throw.
  localapi::ControlResponse call(const localapi::ControlRequest& request, std::chrono::milliseconds timeout);

 private:
  void send_line(const std::string& line, std::chrono::steady_clock::time_point deadline);
  std::string read_line(std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds timeout);

  std::string path_;
  int fd_ = -1;
  std::string buffer_;
};

// The typed answer, or CliError with knitd's error message.
template <typename Reply>
Reply expect(localapi::ControlResponse response) {
  if (auto* error = std::get_if<localapi::ErrorReply>(&response)) throw CliError(error->message);
  if (auto* reply = std::get_if<Reply>(&response)) return std::move(*reply);
  throw CliError("knitd answered with something else: are knit and knitd the same version?");
}

}  // namespace knit::cli
