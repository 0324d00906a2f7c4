// PCP (RFC 6887) over an Asio UDP socket connected to the gateway's port 5351: MAP to ask for,
// renew and delete a mapping, ANNOUNCE to probe. The codec is punch/portmap/pcp.hpp; this file
// only sends, retransmits, waits and counts.
#pragma once

#include <asio.hpp>
#include <memory>
#include <optional>

#include "base/random.hpp"
#include "punch/portmap/client.hpp"
#include "punch/portmap/pcp.hpp"
#include "punch/portmap/schedule.hpp"

namespace knit::punch {

class PcpClient final : public PortMapClient {
 public:
  PcpClient(asio::io_context& io, PortMapClientOptions options, Random& random,
            PortMapCounters& counters);
  ~PcpClient() override;
  PcpClient(const PcpClient&) = delete;
  PcpClient& operator=(const PcpClient&) = delete;

  PortMapProtocol protocol() const override { return PortMapProtocol::pcp; }
  void map(std::uint16_t internal_port, Duration lifetime, Done done) override;
  void probe(Done done) override;
  void unmap(std::function<void()> done) override;
  void cancel() override;

 private:
  enum class Kind { map, announce, unmap };
  // Opens and connects the socket on first use; a failure is returned as the outcome.
  std::optional<PortMapFailure> ensure_socket();
  void begin(Kind kind, Bytes request, Duration timeout, Done done);
  void send_request();
  void arm_retry(Duration after);
  void arm_receive();
  void on_datagram(std::size_t size);
  void finish(PortMapOutcome outcome);
  PortMapFailure fail(PortMapErrc error, std::string detail) const;

  PortMapClientOptions options_;
  Random& random_;
  PortMapCounters& counters_;
  asio::ip::udp::socket socket_;
  asio::steady_timer retry_timer_;
  asio::steady_timer deadline_timer_;
  IpAddress client_address_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  // The exchange in flight (generation_ tells its handlers from an abandoned one's).
  std::uint64_t generation_ = 0;
  bool busy_ = false;
  bool receiving_ = false;
  Kind kind_ = Kind::map;
  Bytes request_;
  Done done_;
  Duration next_retry_{};
  std::uint64_t sent_ = 0;
  std::uint64_t dropped_ = 0;
  std::array<std::uint8_t, portmap::kMaxMessage + 4> buffer_{};
  asio::ip::udp::endpoint sender_;

  // The mapping, kept for renewals (same nonce and ports, §11.2) and deletion.
  PcpMapRequest map_request_;
  bool have_nonce_ = false;
  std::optional<PortMapping> mapping_;
  EpochTracker epoch_;
};

}  // namespace knit::punch
