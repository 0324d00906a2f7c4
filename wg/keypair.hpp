// A session's transport keys and the three-slot rotation WireGuard uses for key confirmation.
//
//   previous ─ still accepted for receiving, so packets in flight across a rekey are not lost
//   current  ─ used for sending (and receiving)
//   next     ─ a responder's fresh session, unconfirmed until the initiator's first data packet
//              arrives on it (whitepaper §5.4.6: the responder must not send first)
//
// Keypairs are shared: a packet whose sealing or opening is in flight (crypto_job.hpp) holds
// its keypair, so a rotation or a zeroing in the middle of a batch drops the keypair from its
// slot (`retired`) but frees it, and zeroes its keys (Secret), only when the last packet that
// uses it is finished.
#pragma once

#include <cstdint>
#include <memory>

#include "base/time.hpp"
#include "wg/handshake.hpp"
#include "wg/replay.hpp"

namespace knit::wg {

struct Keypair {
  SymmetricKey send_key;
  SymmetricKey receive_key;
  std::uint64_t send_counter = 0;  // the nonce of the next packet sent
  ReplayWindow replay;
  Instant created{};
  bool initiator = false;
  std::uint32_t local_index = 0;
  std::uint32_t remote_index = 0;
  // Dropped from its slot (rotated out or zeroed): no longer receivable, whatever still holds it.
  bool retired = false;

  Keypair(SessionKeys&& keys, Instant now);
  // §6.1: no sending once REJECT_AFTER_TIME or REJECT_AFTER_MESSAGES is reached.
  bool can_send(Instant now) const;
  bool can_receive(Instant now) const;
  // §6.2: the initiator starts a new handshake after REKEY_AFTER_TIME or REKEY_AFTER_MESSAGES.
  bool wants_rekey_on_send(Instant now) const;
  // §6.2: an initiator whose session is near rejection rekeys when it receives.
  bool wants_rekey_on_receive(Instant now) const;
};

// Local indices of keypairs dropped by a rotation, for the device to retire from its index table.
struct Retired {
  std::uint32_t indices[2] = {0, 0};
  int count = 0;
  void add(std::uint32_t index) { indices[count++] = index; }
};

class Keypairs {
 public:
  // Installs a freshly derived session. An initiator's is confirmed at once (it has seen the
  // response); a responder's waits in `next` until data arrives on it.
  Retired install(std::shared_ptr<Keypair> keypair);
  // Called after a packet authenticated with `keypair`. If it was `next`, it is now confirmed
  // and becomes current (the old current becomes previous).
  Retired confirm(const Keypair* keypair, bool& rotated);
  // Drops every keypair; reports their local indices to on_removed first.
  template <typename F>
  void clear(F&& on_removed) {
    for (auto* slot : {&previous_, &current_, &next_}) {
      if (*slot) {
        on_removed((*slot)->local_index);
        (*slot)->retired = true;
      }
      slot->reset();
    }
  }
  // The slot's owner of keypair (one of the three), for a packet in flight to hold; empty if
  // keypair is in no slot.
  std::shared_ptr<Keypair> share(const Keypair* keypair) const;

  Keypair* current() const { return current_.get(); }
  Keypair* previous() const { return previous_.get(); }
  Keypair* next() const { return next_.get(); }

 private:
  static void drop(std::shared_ptr<Keypair>& slot, Retired& retired);

  std::shared_ptr<Keypair> previous_;
  std::shared_ptr<Keypair> current_;
  std::shared_ptr<Keypair> next_;
};

}  // namespace knit::wg
