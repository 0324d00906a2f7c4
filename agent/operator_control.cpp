#include "agent/operator_control.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <charconv>
#include <sstream>
#include <vector>

#include "base/log.hpp"
#include "base/state_dir.hpp"

namespace knit::agent {

namespace {

constexpr std::size_t kMaxOperatorFile = 4096;

std::optional<gid_t> group_id(const char* name) {
  std::vector<char> buffer(16384);
  group entry{};
  group* found = nullptr;
  if (::getgrnam_r(name, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) return std::nullopt;
  return found->gr_gid;
}

// A user by name or numeric uid: its uid and name (the number itself when it has no name).
std::optional<OperatorSetting> find_user(const std::string& user) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  uid_t uid = 0;
  const auto [end, ec] = std::from_chars(user.data(), user.data() + user.size(), uid);
  const bool numeric = ec == std::errc() && end == user.data() + user.size();
  if (numeric) {
    if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr)
      return OperatorSetting{found->pw_name, uid};
    return OperatorSetting{user, uid};
  }
  if (::getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr)
    return std::nullopt;
  return OperatorSetting{found->pw_name, found->pw_uid};
}

}  // namespace

std::string encode_operator(const OperatorSetting& setting) {
  return "name=" + setting.name + "\nuid=" + std::to_string(setting.uid) + "\n";
}

std::optional<OperatorSetting> parse_operator(const std::string& text, std::string& why) {
  OperatorSetting out;
  bool have_uid = false;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("name=", 0) == 0) {
      out.name = line.substr(5);
    } else if (line.rfind("uid=", 0) == 0) {
      const std::string value = line.substr(4);
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out.uid);
      if (ec != std::errc() || end != value.data() + value.size()) {
        why = "uid is not a number";
        return std::nullopt;
      }
      have_uid = true;
    }
  }
  if (!have_uid) {
    why = "no uid";
    return std::nullopt;
  }
  return out;
}

OperatorControl::OperatorControl(std::filesystem::path state_dir, ControlHandler& next)
    : state_dir_(std::move(state_dir)), next_(next) {}

void OperatorControl::restore() {
  try {
    operator_ = StateDirectory(state_dir_).load<OperatorSetting>(kOperatorFile, kMaxOperatorFile, parse_operator,
                                                                 "set it again with `knit set --operator USER`");
  } catch (const std::exception& e) {
    log(LogLevel::error, "knitd", e.what(), ": no operator");
    return;
  }
  if (operator_) log(LogLevel::info, "knitd", "operator ", operator_->name, " (uid ", operator_->uid, ")");
}

std::string OperatorControl::set_operator(const std::string& user) {
  std::optional<OperatorSetting> wanted;
  if (!user.empty()) {
    wanted = find_user(user);
    if (!wanted) return "no user named " + user + " on this host: pass a user name or a numeric uid";
    if (wanted->uid == 0) return "root may always change knitd: name another user as the operator";
  }
  if (wanted == operator_) return {};
  try {
    StateDirectory dir(state_dir_);
    if (wanted) dir.write(kOperatorFile, encode_operator(*wanted));
    else dir.remove(kOperatorFile);
  } catch (const std::exception& e) {
    return std::string("cannot save the operator: ") + e.what();
  }
  operator_ = wanted;
  if (operator_) log(LogLevel::info, "knitd", "operator set to ", operator_->name, " (uid ", operator_->uid, ")");
  else log(LogLevel::info, "knitd", "operator cleared");
  return {};
}

void OperatorControl::handle_request(localapi::ControlRequest request, Reply reply) {
  auto* set = std::get_if<localapi::SetRequest>(&request);
  if (set == nullptr) return next_.handle_request(std::move(request), std::move(reply));
  if (set->operator_user) {
    if (std::string failed = set_operator(*set->operator_user); !failed.empty())
      return reply(localapi::ErrorReply{failed});
    set->operator_user.reset();
  }
  next_.handle_request(std::move(request), [this, reply](localapi::ControlResponse response) {
    if (auto* answer = std::get_if<localapi::SetReply>(&response))
      answer->operator_user = operator_ ? operator_->name : std::string();
    reply(std::move(response));
  });
}

std::optional<std::string> OperatorControl::check(const std::optional<net::PeerCredentials>& caller,
                                                  const localapi::ControlRequest& request) const {
  if (!caller) return std::string("knitd cannot tell who is asking (no peer credentials on the socket)");
  AccessPolicy policy;
  policy.daemon_uid = ::geteuid();
  if (operator_) {
    policy.operator_uid = operator_->uid;
    policy.operator_name = operator_->name;
  }
  // Looked up per request: the group may be made (or a member added) while knitd runs.
  if (caller->uid != 0 && caller->uid != policy.daemon_uid) policy.read_gid = group_id(kReadGroup);
  return refusal(*caller, policy, request);
}

}  // namespace knit::agent
