// The Internet checksum (RFC 1071; the full sum is base/checksum.hpp) updated incrementally when
// a NAT rewrites a 16- or 32-bit field (RFC 1624, equation 3: HC' = ~(~HC + ~m + m')).
//
// Incremental updates are only valid for fields at an even offset from the start of the
// checksummed data; every field the NAT rewrites (addresses, ports, ICMP identifiers, and the
// quoted header inside an ICMP error, which starts 8 bytes into the ICMP message) is.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/bytes.hpp"
#include "base/checksum.hpp"

namespace knit::nat {

// The full sum (checksum_accumulate, checksum_fold, internet_checksum) is base/checksum.hpp.
// Sum of the TCP/UDP pseudo-header: source, destination, protocol and transport length.
std::uint32_t pseudo_header_sum(std::uint32_t source, std::uint32_t destination,
                                std::uint8_t protocol, std::uint16_t length);

// RFC 1624 eqn 3: the checksum after one 16-bit word of the covered data went old -> new.
// Unlike eqn 2 it never turns a valid sum into -0 (the 0xffff vs 0x0000 trouble).
inline std::uint16_t checksum_adjust16(std::uint16_t checksum, std::uint16_t old_word,
                                       std::uint16_t new_word) {
  std::uint32_t sum = static_cast<std::uint16_t>(~checksum);
  sum += static_cast<std::uint16_t>(~old_word);
  sum += new_word;
  sum = (sum & 0xffffu) + (sum >> 16);  // at most two folds for three 16-bit terms
  sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}
std::uint16_t checksum_adjust32(std::uint16_t checksum, std::uint32_t old_value,
                                std::uint32_t new_value);

// A checksum field to keep right while rewriting words it covers. `udp`: the UDP rules of
// RFC 768 apply (0 = "no checksum" stays 0; a computed 0 is sent as 0xffff).
struct ChecksumField {
  std::uint8_t* at = nullptr;  // nullptr: no such checksum (e.g. not inside the captured bytes)
  bool udp = false;
};

// Writes words in place and keeps up to three checksums right, RFC 1624 style. The optional
// `enclosing` checksum covers the words written *and* the other checksum fields (the ICMP
// checksum around a quoted packet): a change to any of those is folded into it too.
class ChecksumWriter {
 public:
  explicit ChecksumWriter(ChecksumField enclosing = {}) : enclosing_(enclosing) {}

  // Sets the word at `field`, adjusting `a` and `b` (each may be absent) and the enclosing sum.
  void set16(std::uint8_t* field, std::uint16_t value, ChecksumField a = {}, ChecksumField b = {}) {
    const std::uint16_t old_word = load_be16(field);
    if (old_word == value) return;
    write_word(field, value);
    adjust(a, old_word, value);
    adjust(b, old_word, value);
  }
  void set32(std::uint8_t* field, std::uint32_t value, ChecksumField a = {}, ChecksumField b = {}) {
    set16(field, static_cast<std::uint16_t>(value >> 16), a, b);
    set16(field + 2, static_cast<std::uint16_t>(value), a, b);
  }

 private:
  void adjust(ChecksumField sum, std::uint16_t old_word, std::uint16_t new_word) {
    if (sum.at == nullptr) return;
    const std::uint16_t current = load_be16(sum.at);
    if (sum.udp && current == 0) return;  // RFC 768: the sender did not compute one
    std::uint16_t next = checksum_adjust16(current, old_word, new_word);
    if (sum.udp && next == 0) next = 0xffff;  // RFC 768: a computed zero is sent as all ones
    write_word(sum.at, next);
  }
  void write_word(std::uint8_t* at, std::uint16_t value) {
    const std::uint16_t old_word = load_be16(at);
    store_be16(at, value);
    if (enclosing_.at != nullptr && at != enclosing_.at)
      store_be16(enclosing_.at, checksum_adjust16(load_be16(enclosing_.at), old_word, value));
  }

  ChecksumField enclosing_;
};

}  // namespace knit::nat
