// One data packet between the two halves of the device's data path, so that the AEAD — the only
// expensive step — can run on any thread while everything else stays on the loop that owns the
// device (docs/ARCHITECTURE.md, "Both cores"):
//
//   loop    Device::prepare_seal / prepare_open   peer, keypair, counter, header, padding: state
//   any     run_crypto(job)                        ChaCha20-Poly1305 in place: job bytes only
//   loop    Device::finish_seal / finish_open      in the order prepared: send; or replay window
//                                                  (after authentication), key confirmation,
//                                                  roaming, timers, cryptokey routing, the TUN
//
// A job holds its keypair (keypair.hpp), so a rotation or zeroing between prepare and finish
// cannot free the key a thread is using; the finish then drops a packet whose keypair was
// retired meanwhile, as the device would have dropped it had it arrived a moment later.
// run_crypto reads key, counter, body and size and writes the body and `ok`; nothing else.
#pragma once

#include <cstdint>
#include <memory>

#include "base/ip.hpp"
#include "wg/keys.hpp"

namespace knit::wg {

struct Keypair;
struct Peer;

struct CryptoJob {
  enum class Kind : std::uint8_t { seal, open };

  // --- what run_crypto reads and writes (any thread) ---
  const SymmetricKey* key = nullptr;  // inside *keypair
  std::uint8_t* body = nullptr;       // seal: padded plaintext, tag room after; open: ciphertext + tag
  std::uint32_t size = 0;             // seal: padded plaintext bytes; open: ciphertext bytes with the tag
  std::uint64_t counter = 0;          // the nonce
  Kind kind = Kind::seal;
  bool ok = false;                    // open: authentic (written by run_crypto)

  // --- the loop's (prepare and finish) ---
  std::uint32_t plain_size = 0;       // seal: before padding (0: keepalive)
  std::uint32_t datagram_size = 0;    // the whole message, header and tag included
  std::uint8_t* datagram = nullptr;   // its first byte (the header)
  Peer* peer = nullptr;
  std::shared_ptr<Keypair> keypair;   // keeps key alive until finish
  Endpoint from;                      // open: where it came from
  bool check_rekey = false;           // seal: a TUN packet (rekey after sending, §6.2)

  // Lets go of the keypair (the last holder frees and zeroes it).
  void reset() {
    keypair.reset();
    key = nullptr;
    peer = nullptr;
  }
};

// The AEAD of one job (whitepaper §5.4.6: ChaCha20-Poly1305, nonce = 32 zero bits ‖ LE64
// counter, empty associated data), in place. Thread-safe: touches only the job and its bytes.
void run_crypto(CryptoJob& job);

}  // namespace knit::wg
