#include "coordinator/token_issue.hpp"

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
  auto listen = store.listen_address();
  if (!listen) return listen.error();
  if (!*listen)
    return Error{Errc::invalid,
                 "no address for the token: pass --advertise HOST:PORT (where agents reach the "
                 "coordinator) or run `knit-coordinator serve --listen HOST:PORT` first"};
  auto address = control::HostPort::parse(**listen);
  if (!address)
    return Error{Errc::invalid, "the saved listen address '" + **listen +
                                    "' is not HOST:PORT: pass --advertise HOST:PORT"};
  if (auto ip = address->ip(); ip && ip->is_unspecified())
    return Error{Errc::invalid, "serve listens on " + **listen +
                                    ", which agents cannot dial: pass --advertise HOST:PORT with "
                                    "an address they can reach"};
  out.push_back(*address);
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
