// UPnP IGD (WANIPConnection) through libminiupnpc. Its calls block (SSDP discovery waits its
// full delay; SOAP actions are HTTP round trips with miniupnpc's own socket timeouts), so they
// run on one worker thread owned by this client, one job at a time, and each result is posted
// back to the Asio loop. Only the worker touches miniupnpc state; only the loop touches the
// rest. Destroying the client waits for the job in flight (bounded by miniupnpc's timeouts).
//
//   discover (SSDP M-SEARCH, upnp_discover_timeout) -> the IGD whose description URL is on the
//   gateway's address (else miniupnpc's choice of a connected IGD) -> GetExternalIPAddress ->
//   AddPortMapping(UDP, external = our port, lease) -> ... -> DeletePortMapping
#pragma once

#include <asio.hpp>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "punch/portmap/client.hpp"

namespace knit::punch {

class UpnpClient final : public PortMapClient {
 public:
  UpnpClient(asio::io_context& io, PortMapClientOptions options, PortMapCounters& counters);
  ~UpnpClient() override;
  UpnpClient(const UpnpClient&) = delete;
  UpnpClient& operator=(const UpnpClient&) = delete;

  PortMapProtocol protocol() const override { return PortMapProtocol::upnp; }
  void map(std::uint16_t internal_port, Duration lifetime, Done done) override;
  void probe(Done done) override;
  void unmap(std::function<void()> done) override;
  void cancel() override;

 private:
  struct Igd;  // miniupnpc's URLs and device data; worker thread only
  using Job = std::function<PortMapOutcome(Igd&)>;
  void run(Job job, Done done);
  void worker_loop();

  asio::io_context& io_;
  PortMapClientOptions options_;
  PortMapCounters& counters_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::uint64_t generation_ = 0;  // loop thread: results of older generations are ignored
  std::optional<PortMapping> mapping_;  // loop thread

  std::unique_ptr<Igd> igd_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread worker_;
};

}  // namespace knit::punch
