// NAT-PMP (RFC 6886) through libnatpmp. libnatpmp's socket is non-blocking and connected to
// the gateway; Asio watches its descriptor (never reads it), and libnatpmp's own retry clock
// (getnatpmprequesttimeout) arms a timer that lets it retransmit. Before libnatpmp reads a
// datagram, this client peeks at it and checks it (punch/portmap/natpmp.hpp): a wrong size,
// version, opcode or port is consumed, dropped and counted, so libnatpmp only ever sees the
// answer to its pending request.
//
// A mapping takes two exchanges: the external address (opcode 0), then the UDP mapping
// (opcode 1), whose answer carries the port but not the address.
#pragma once

#include <natpmp.h>

#include <asio.hpp>
#include <memory>
#include <optional>

#include "punch/portmap/client.hpp"
#include "punch/portmap/natpmp.hpp"
#include "punch/portmap/schedule.hpp"

namespace knit::punch {

class NatPmpClient final : public PortMapClient {
 public:
  NatPmpClient(asio::io_context& io, PortMapClientOptions options, PortMapCounters& counters);
  ~NatPmpClient() override;
  NatPmpClient(const NatPmpClient&) = delete;
  NatPmpClient& operator=(const NatPmpClient&) = delete;

  PortMapProtocol protocol() const override { return PortMapProtocol::natpmp; }
  void map(std::uint16_t internal_port, Duration lifetime, Done done) override;
  void probe(Done done) override;
  void unmap(std::function<void()> done) override;
  void cancel() override;

 private:
  void begin(bool probe_only, Done done);
  enum class Step { address, map, unmap };
  std::optional<PortMapFailure> ensure_open();
  void close();
  // Sends the step's request through libnatpmp and waits for its answer.
  void send_step(Step step);
  void arm_wait();
  void arm_retry();
  // Reads whatever is queued: drops hostile datagrams, hands a good one to libnatpmp.
  void drain();
  void on_answer(const NatPmpAnswer& checked, const natpmpresp_t& response);
  void finish(PortMapOutcome outcome);
  PortMapFailure fail(PortMapErrc error, std::string detail) const;

  asio::io_context& io_;
  PortMapClientOptions options_;
  PortMapCounters& counters_;
  natpmp_t natpmp_{};
  bool open_ = false;
  asio::posix::stream_descriptor descriptor_;
  asio::steady_timer retry_timer_;
  asio::steady_timer deadline_timer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  bool busy_ = false;
  bool waiting_ = false;
  bool probe_only_ = false;
  Step step_ = Step::address;
  Done done_;
  std::uint64_t generation_ = 0;
  std::uint64_t dropped_ = 0;
  int tries_ = 0;

  std::uint16_t internal_port_ = 0;
  std::uint32_t lifetime_s_ = 0;
  IpAddress external_address_;
  std::optional<PortMapping> mapping_;
  EpochTracker epoch_;
};

}  // namespace knit::punch
