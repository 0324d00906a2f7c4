#include "wg/keypair.hpp"

#include "wg/constants.hpp"

namespace knit::wg {

Keypair::Keypair(SessionKeys&& keys, Instant now)
    : send_key(keys.send),
      receive_key(keys.receive),
      created(now),
      initiator(keys.initiator),
      local_index(keys.local_index),
      remote_index(keys.remote_index) {
  keys.send.wipe();
  keys.receive.wipe();
}

bool Keypair::can_send(Instant now) const {
  return now - created < kRejectAfterTime && send_counter < kRejectAfterMessages;
}

bool Keypair::can_receive(Instant now) const { return now - created < kRejectAfterTime; }

bool Keypair::wants_rekey_on_send(Instant now) const {
  return send_counter > kRekeyAfterMessages || (initiator && now - created > kRekeyAfterTime);
}

bool Keypair::wants_rekey_on_receive(Instant now) const {
  return initiator && now - created > kRekeyOnReceiveAge;
}

void Keypairs::drop(std::shared_ptr<Keypair>& slot, Retired& retired) {
  if (slot) {
    retired.add(slot->local_index);
    slot->retired = true;
  }
  slot.reset();
}

std::shared_ptr<Keypair> Keypairs::share(const Keypair* keypair) const {
  for (const auto* slot : {&current_, &previous_, &next_})
    if (slot->get() == keypair && keypair != nullptr) return *slot;
  return {};
}

Retired Keypairs::install(std::shared_ptr<Keypair> keypair) {
  Retired retired;
  if (keypair->initiator) {
    // The initiator has seen the response, so the new session is usable at once.
    if (next_) {
      // A responder session still waiting for confirmation: keep it receivable as previous
      // (the peer may already be sending on it) and drop the old current.
      drop(previous_, retired);
      drop(current_, retired);
      previous_ = std::move(next_);
    } else {
      drop(previous_, retired);
      previous_ = std::move(current_);
    }
    current_ = std::move(keypair);
  } else {
    // The responder may not send on the new session until the initiator's first packet
    // arrives on it; until then current keeps working.
    drop(next_, retired);
    drop(previous_, retired);
    next_ = std::move(keypair);
  }
  return retired;
}

Retired Keypairs::confirm(const Keypair* keypair, bool& rotated) {
  Retired retired;
  rotated = false;
  if (keypair == nullptr || keypair != next_.get()) return retired;
  drop(previous_, retired);
  previous_ = std::move(current_);
  current_ = std::move(next_);
  rotated = true;
  return retired;
}

}  // namespace knit::wg
