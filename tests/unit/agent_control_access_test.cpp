// Who may ask knitd what (agent/control_access.hpp): a numbered table of callers and requests
// against one policy, every request's class, and the refusals' wording (which command, who may,
// how to become one).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "agent/control_access.hpp"
#include "agent/operator_control.hpp"

namespace knit::agent {
namespace {

using localapi::ControlRequest;

constexpr uid_t kDaemon = 0;
constexpr uid_t kAlice = 1000;  // the operator
constexpr uid_t kBob = 1001;    // in the group knit
constexpr uid_t kCarol = 1002;  // nobody special
constexpr gid_t kKnit = 120;

net::PeerCredentials caller(uid_t uid, gid_t gid, std::vector<gid_t> groups = {}) {
  return net::PeerCredentials{4242, uid, gid, std::move(groups)};
}

AccessPolicy policy() {
  AccessPolicy p;
  p.daemon_uid = kDaemon;
  p.operator_uid = kAlice;
  p.operator_name = "alice";
  p.read_gid = kKnit;
  return p;
}

std::vector<ControlRequest> reads() {
  return {localapi::StatusRequest{}, localapi::IpRequest{}, localapi::PingInfoRequest{"peer"},
          localapi::VersionRequest{}, localapi::NetcheckRequest{}, localapi::DnsStatusRequest{},
          localapi::ForwardListRequest{}, localapi::PolicyDebugRequest{}, localapi::NatRequest{}};
}

std::vector<ControlRequest> changes() {
  return {localapi::UpRequest{}, localapi::DownRequest{}, localapi::LogoutRequest{}, localapi::SetRequest{},
          localapi::ForwardAddRequest{}, localapi::ForwardRemoveRequest{}, localapi::RoutesRequest{}};
}

TEST(ControlAccess, EveryRequestHasItsClass) {
  for (const auto& r : reads()) EXPECT_EQ(access_needed(r), ControlAccess::read) << command_name(r);
  for (const auto& r : changes()) EXPECT_EQ(access_needed(r), ControlAccess::change) << command_name(r);
  // Every alternative of the request variant is in one of the two lists.
  EXPECT_EQ(reads().size() + changes().size(), std::variant_size_v<ControlRequest>);
}

TEST(ControlAccess, Table) {
  struct Case {
    int n;
    net::PeerCredentials who;
    bool read;
    bool change;
  };
  const std::vector<Case> cases = {
      {1, caller(0, 0), true, true},                           // root
      {2, caller(kAlice, 1000), true, true},                   // the operator, in no group
      {3, caller(kBob, 1001, {1001, kKnit}), true, false},     // the group knit (supplementary)
      {4, caller(kBob, kKnit), true, false},                   // the group knit (primary)
      {5, caller(kCarol, 1002, {1002, 27, 100}), false, false},  // others
      {6, caller(kCarol, 1002), false, false},
      {7, caller(65534, 65534), false, false},                 // nobody
  };
  for (const Case& c : cases) {
    for (const auto& r : reads())
      EXPECT_EQ(!refusal(c.who, policy(), r).has_value(), c.read) << "case " << c.n << " " << command_name(r);
    for (const auto& r : changes())
      EXPECT_EQ(!refusal(c.who, policy(), r).has_value(), c.change) << "case " << c.n << " " << command_name(r);
  }
}

TEST(ControlAccess, WithoutOperatorOrGroup) {
  AccessPolicy bare;
  bare.daemon_uid = 0;
  EXPECT_FALSE(refusal(caller(0, 0), bare, localapi::DownRequest{}));
  EXPECT_TRUE(refusal(caller(kAlice, 1000), bare, localapi::DownRequest{}));
  EXPECT_TRUE(refusal(caller(kBob, kKnit, {kKnit}), bare, localapi::StatusRequest{}));  // no such group
}

TEST(ControlAccess, KnitdsOwnUserMayDoAnything) {
  AccessPolicy own;
  own.daemon_uid = 1500;  // knitd run by a user with CAP_NET_ADMIN
  EXPECT_FALSE(refusal(caller(1500, 1500), own, localapi::DownRequest{}));
  EXPECT_FALSE(refusal(caller(0, 0), own, localapi::DownRequest{}));
  EXPECT_TRUE(refusal(caller(1501, 1501), own, localapi::StatusRequest{}));
}

TEST(ControlAccess, RefusalsSayWhatToDo) {
  const auto read = refusal(caller(kCarol, 1002), policy(), localapi::StatusRequest{});
  ASSERT_TRUE(read);
  EXPECT_NE(read->find("knit status"), std::string::npos) << *read;
  EXPECT_NE(read->find("group knit"), std::string::npos) << *read;
  EXPECT_NE(read->find("usermod -aG knit"), std::string::npos) << *read;
  EXPECT_NE(read->find("alice"), std::string::npos) << *read;

  const auto change = refusal(caller(kBob, kKnit), policy(), localapi::ForwardAddRequest{});
  ASSERT_TRUE(change);
  EXPECT_NE(change->find("knit forward add"), std::string::npos) << *change;
  EXPECT_NE(change->find("root or the operator (alice)"), std::string::npos) << *change;
  EXPECT_NE(change->find("knit set --operator"), std::string::npos) << *change;

  AccessPolicy unnamed = policy();
  unnamed.operator_name.clear();
  EXPECT_NE(refusal(caller(kBob, kKnit), unnamed, localapi::DownRequest{})->find("uid 1000"), std::string::npos);
}

// The operator's setting: kept in the state directory, restored by a new knitd, used by check().
class PassOn : public ControlHandler {
 public:
  void handle_request(localapi::ControlRequest request, Reply reply) override {
    last = std::move(request);
    reply(localapi::SetReply{false, std::nullopt, std::nullopt, std::nullopt});
  }
  std::optional<localapi::ControlRequest> last;
};

TEST(OperatorControl, SetKeptAndUsed) {
  char pattern[] = "/tmp/knit-operator-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(pattern);
  PassOn next;
  std::optional<localapi::ControlResponse> answer;
  auto reply = [&](localapi::ControlResponse r) { answer = std::move(r); };
  {
    OperatorControl control(dir, next);
    control.restore();
    EXPECT_FALSE(control.current());
    control.handle_request(localapi::SetRequest{true, std::nullopt, std::nullopt, "4000000"}, reply);
    ASSERT_TRUE(answer && std::holds_alternative<localapi::SetReply>(*answer));
    EXPECT_EQ(std::get<localapi::SetReply>(*answer).operator_user, std::optional<std::string>("4000000"));
    struct stat st {};
    ASSERT_EQ(::stat((dir / kOperatorFile).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);  // who may change knitd: as private as the keys
    // The rest of the set goes on, without the operator.
    ASSERT_TRUE(next.last);
    EXPECT_EQ(std::get<localapi::SetRequest>(*next.last), (localapi::SetRequest{true, std::nullopt, std::nullopt, std::nullopt}));
    control.handle_request(localapi::SetRequest{std::nullopt, std::nullopt, std::nullopt, "no-such-user-here"}, reply);
    ASSERT_TRUE(std::holds_alternative<localapi::ErrorReply>(*answer));
    EXPECT_NE(std::get<localapi::ErrorReply>(*answer).message.find("no user named no-such-user-here"), std::string::npos);
    control.handle_request(localapi::SetRequest{std::nullopt, std::nullopt, std::nullopt, "0"}, reply);
    ASSERT_TRUE(std::holds_alternative<localapi::ErrorReply>(*answer));  // root needs no naming
  }
  OperatorControl restarted(dir, next);
  restarted.restore();
  ASSERT_TRUE(restarted.current());
  EXPECT_EQ(restarted.current()->uid, 4000000u);
  const net::PeerCredentials op{1, 4000000, 4000000, {}};
  const net::PeerCredentials other{1, 4000001, 4000001, {}};
  if (::geteuid() != 4000000 && ::geteuid() != 4000001) {
    EXPECT_FALSE(restarted.check(op, localapi::DownRequest{}));
    EXPECT_TRUE(restarted.check(other, localapi::DownRequest{}));
  }
  EXPECT_TRUE(restarted.check(std::nullopt, localapi::StatusRequest{}));  // nobody to judge
  restarted.handle_request(localapi::SetRequest{std::nullopt, std::nullopt, std::nullopt, ""}, reply);
  ASSERT_TRUE(std::holds_alternative<localapi::SetReply>(*answer));
  EXPECT_EQ(std::get<localapi::SetReply>(*answer).operator_user, std::optional<std::string>(""));
  EXPECT_FALSE(std::filesystem::exists(dir / kOperatorFile));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace knit::agent
