// The shields and port forwards as saved in the state dir, and as the control protocol and
// `knit status --json` carry them.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "localapi/protocol.hpp"
#include "agent/forward_store.hpp"

namespace knit::agent {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

FilterSettings sample() {
  return FilterSettings{true,
                        {{localapi::ForwardProtocol::tcp, 8080, ep("10.9.0.2:80")},
                         {localapi::ForwardProtocol::udp, 5353, ep("192.168.1.1:53")}}};
}

TEST(AgentForwardStore, RoundTripsThroughAPrivateFile) {
  const auto dir = std::filesystem::temp_directory_path() / ("knit-fwd-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ForwardStore store(dir);
  EXPECT_EQ(store.load(), FilterSettings{});  // no file yet: defaults
  store.save(sample());
  EXPECT_EQ(store.load(), sample());
  struct stat info {};
  ASSERT_EQ(::stat(store.file().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  {
    std::ofstream damage(store.file(), std::ios::trunc);
    damage << "{\"shields_up\": \"yes\"}";
  }
  EXPECT_THROW(store.load(), std::runtime_error);
  std::filesystem::remove_all(dir);
}

TEST(AgentForwardStore, RefusesBadDocuments) {
  std::string why;
  EXPECT_FALSE(parse_filter_settings("[]", why));
  EXPECT_FALSE(parse_filter_settings("{\"forwards\": 3}", why));
  EXPECT_FALSE(parse_filter_settings(R"({"forwards": [{"proto": "sctp", "mesh_port": 1, "target": "10.0.0.1:1"}]})", why));
  EXPECT_FALSE(parse_filter_settings(R"({"forwards": [{"proto": "tcp", "mesh_port": 70000, "target": "10.0.0.1:1"}]})", why));
  EXPECT_FALSE(parse_filter_settings(R"({"forwards": [{"proto": "tcp", "mesh_port": 80, "target": "127.0.0.1:1"}]})", why));
  EXPECT_FALSE(parse_filter_settings(R"({"forwards": [{"proto": "tcp", "mesh_port": 80}]})", why));
  auto ok = parse_filter_settings(R"({"shields_up": true})", why);
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->shields_up);
}

TEST(AgentForwardStore, ControlMessagesRoundTrip) {
  const std::vector<localapi::ControlRequest> requests = {
      localapi::SetRequest{true, std::nullopt, std::nullopt, std::nullopt}, localapi::SetRequest{false, std::nullopt, std::nullopt, std::nullopt}, localapi::SetRequest{std::nullopt, std::nullopt, std::nullopt, std::nullopt},
      localapi::ForwardAddRequest{{localapi::ForwardProtocol::tcp, 8080, ep("10.9.0.2:80")}},
      localapi::ForwardRemoveRequest{localapi::ForwardProtocol::udp, 53}, localapi::ForwardListRequest{},
      localapi::UpRequest{"tok", "h"}};
  for (const auto& request : requests) {
    auto back = localapi::parse_request(localapi::encode_request(request));
    ASSERT_TRUE(std::holds_alternative<localapi::ControlRequest>(back)) << localapi::encode_request(request);
    EXPECT_EQ(std::get<localapi::ControlRequest>(back), request);
  }
  localapi::ForwardStatus f{{localapi::ForwardProtocol::tcp, 8080, ep("10.9.0.2:80")}, true, 5, 4, 1};
  const std::vector<localapi::ControlResponse> responses = {localapi::SetReply{true, std::nullopt, std::nullopt, std::nullopt}, localapi::ForwardsReply{{f}}, localapi::ForwardsReply{}};
  for (const auto& response : responses) {
    auto back = localapi::parse_response(localapi::encode_response(response));
    ASSERT_TRUE(std::holds_alternative<localapi::ControlResponse>(back)) << localapi::encode_response(response);
    EXPECT_EQ(std::get<localapi::ControlResponse>(back), response);
  }
  EXPECT_TRUE(std::holds_alternative<localapi::ProtocolError>(
      localapi::parse_request(R"({"cmd": "forward-add", "proto": "tcp", "mesh_port": 0, "target": "10.0.0.1:1"})")));
  EXPECT_TRUE(std::holds_alternative<localapi::ProtocolError>(localapi::parse_request(R"({"cmd": "set", "shields_up": 1})")));
}

TEST(AgentForwardStore, StatusCarriesTheFilterUnderSelf) {
  localapi::StatusReport status;
  status.self.name = "a";
  status.self.ipv4 = IpAddress::parse("100.64.0.1").value();
  status.self.ipv6 = IpAddress::parse("fd7a::1").value();
  localapi::FilterStatus filter;
  filter.shields_up = true;
  filter.forwards = {localapi::ForwardStatus{{localapi::ForwardProtocol::udp, 53, ep("10.0.0.1:53")}, false, 0, 0, 0}};
  filter.counters.refused_v4 = 7;
  status.self.filter = filter;
  const std::string text = localapi::encode_status(status);
  EXPECT_NE(text.find("\"shields_up\":true"), std::string::npos) << text;
  EXPECT_NE(text.find("\"refused_v4\":7"), std::string::npos) << text;
  // Every contract field is still there, in front.
  EXPECT_LT(text.find("\"relay\""), text.find("\"shields_up\""));
  auto back = localapi::parse_response(localapi::encode_response(localapi::StatusReply{status, {"connected", "x", ""}}));
  ASSERT_TRUE(std::holds_alternative<localapi::ControlResponse>(back));
  EXPECT_EQ(std::get<localapi::StatusReply>(std::get<localapi::ControlResponse>(back)).status, status);
}

}  // namespace
}  // namespace knit::agent
