#include "coordinator/token_issue.hpp"

#include <string_view>

#include "control/constants.hpp"
#include "control/token.hpp"

namespace knit::coordinator {

Result<std::vector<control::HostPort>> token_addresses(Store& store,
                                                       const std::vector<std::string>& advertise) {
  std::vector<control::HostPort> out;
  if (!advertise.empty()) {
    for (const auto& text : advertise) {
      auto address = control::HostPort::parse(text);
      if (!address)
        return Error{Errc::invalid, "--advertise " + text +
                                        " is not HOST:PORT (e.g. coord.example.com:7443 or "
                                        "[2001:db8::1]:7443)"};
      out.push_back(*address);
    }
    if (out.size() > control::kMaxTokenAddresses)
      return Error{Errc::invalid, "a token carries at most " +
                                      std::to_string(control::kMaxTokenAddresses) +
                                      " coordinator addresses"};
    return out;
  }
  // What the last serve saved: its --advertise addresses (space-separated) or its --listen one.
  auto saved = store.listen_address();
  if (!saved) return saved.error();
  if (!*saved)
    return Error{Errc::invalid,
                 "no address for the token: pass --advertise HOST:PORT (where agents reach the "
                 "coordinator) or run `knit-coordinator serve --listen HOST:PORT` first"};
  std::string_view rest = **saved;
  while (!rest.empty()) {
    const auto start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const std::string_view text = rest.substr(0, rest.find(' '));
    rest.remove_prefix(text.size());
    auto address = control::HostPort::parse(text);
    if (!address)
      return Error{Errc::invalid, "the saved coordinator address '" + std::string(text) +
                                      "' is not HOST:PORT: pass --advertise HOST:PORT"};
    if (auto ip = address->ip(); ip && ip->is_unspecified())
      return Error{Errc::invalid,
                   "serve listens on " + address->to_string() +
                       ", which agents cannot dial: set KNIT_COORDINATOR_ADVERTISE=HOST:PORT in "
                       "/etc/knit/coordinator.conf and restart knit-coordinator (or run serve "
                       "with --advertise HOST:PORT), or pass --advertise HOST:PORT here"};
    out.push_back(*address);
  }
  if (out.empty() || out.size() > control::kMaxTokenAddresses)
    return Error{Errc::invalid, "the saved coordinator addresses '" + **saved +
                                    "' do not fit a token: pass --advertise HOST:PORT"};
  return out;
}

Result<IssuedToken> issue_token(Store& store, const TokenOptions& options,
                                const std::vector<control::HostPort>& addresses,
                                const wg::PublicKey& coordinator_key, Random& rng,
                                UnixSeconds now) {
  for (const auto& tag : options.tags)
    if (!valid_tag(tag))
      return Error{Errc::invalid, "invalid tag '" + tag + "': use 1 to 63 of a-z 0-9 - _"};
  if (options.tags.size() > control::kMaxTags)
    return Error{Errc::invalid, "at most " + std::to_string(control::kMaxTags) + " tags"};

  control::JoinToken token;
  token.addresses = addresses;
  token.coordinator_key = coordinator_key;
  rng.fill(token.id);
  rng.fill(token.secret.span());

  IssuedToken issued;
  issued.text = control::encode_token(token);
  if (issued.text.empty())
    return Error{Errc::invalid, "the coordinator addresses cannot go into a token (1 to " +
                                    std::to_string(control::kMaxTokenAddresses) +
                                    " HOST:PORT needed)"};
  Token& record = issued.record;
  record.id = control::token_id_hex(token.id);
  record.secret_hash = control::secret_hash(token.secret);
  record.reusable = options.reusable;
  record.ephemeral = options.ephemeral;
  record.relay = options.relay;
  if (options.lifetime) record.expires_at = now + *options.lifetime;
  record.tags = options.tags;
  record.created_at = now;
  // A 64-bit random id colliding is practically impossible; add_token refuses it anyway.
  if (auto r = store.add_token(record); !r) return r.error();
  return issued;
}

}  // namespace knit::coordinator
