// Allowed IPs: the table that maps an inner address to the peer that owns it, by longest
// prefix (whitepaper §2, "cryptokey routing"). Outbound it picks the peer for a destination;
// inbound it checks that a decrypted packet's source belongs to the peer that sent it.
//
// A path-compressed binary trie per family. Every node stands for a prefix (its key masked
// to `length` bits); a node owns a value or is a fork with exactly two children. A child
// extends its parent's prefix, and the first bit after the parent's prefix picks the side:
//
//                      10.0.0.0/8 = A
//                      /            \            lookup(10.1.2.3):
//          10.0.0.0/15 (fork)      10.128.0.0/9 = C    /8 matches  -> best A
//            /         \                               bit 8 = 0   -> fork /15 matches
//   10.0.0.0/16 = B   10.1.2.0/24 = D                  bit 15 = 1  -> /24 matches -> D
//
// Lookups walk at most one node per prefix length, compare with two word masks and allocate
// nothing; inserts and removals keep the invariant (no fork with fewer than two children).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::wg {

namespace allowed_ips_detail {

// An address as 128 bits, most significant first: IPv4 fills the top 32 bits of word 0.
struct Key {
  std::array<std::uint64_t, 2> words{};
  friend bool operator==(const Key&, const Key&) = default;
};

inline Key key_v4(const std::uint8_t* four_bytes) {
  return Key{{std::uint64_t{load_be32(four_bytes)} << 32, 0}};
}
inline Key key_v6(const std::uint8_t* sixteen_bytes) {
  return Key{{load_be64(sixteen_bytes), load_be64(sixteen_bytes + 8)}};
}

// Bit `index` (0 = most significant); index < 128.
inline unsigned bit_at(const Key& key, unsigned index) {
  return static_cast<unsigned>((key.words[index >> 6] >> (63 - (index & 63))) & 1);
}

// The top `length` bits set (length <= 64).
inline std::uint64_t word_mask(unsigned length) {
  return length == 0 ? 0 : ~std::uint64_t{0} << (64 - length);
}

// Keeps the first `length` bits of key (length <= 128).
inline Key masked(const Key& key, unsigned length) {
  const unsigned high = length < 64 ? length : 64;
  const unsigned low = length > 64 ? length - 64 : 0;
  return Key{{key.words[0] & word_mask(high), key.words[1] & word_mask(low)}};
}

// True if `key` lies inside the prefix `prefix_key`/`length` (prefix_key already masked).
inline bool prefix_contains(const Key& prefix_key, unsigned length, const Key& key) {
  const unsigned high = length < 64 ? length : 64;
  const unsigned low = length > 64 ? length - 64 : 0;
  return ((key.words[0] ^ prefix_key.words[0]) & word_mask(high)) == 0 &&
         ((key.words[1] ^ prefix_key.words[1]) & word_mask(low)) == 0;
}

// How many leading bits a and b share, at most `limit`.
inline unsigned common_length(const Key& a, const Key& b, unsigned limit) {
  unsigned same = 128;
  if (const std::uint64_t x = a.words[0] ^ b.words[0]; x != 0) {
    same = static_cast<unsigned>(std::countl_zero(x));
  } else if (const std::uint64_t y = a.words[1] ^ b.words[1]; y != 0) {
    same = 64 + static_cast<unsigned>(std::countl_zero(y));
  }
  return same < limit ? same : limit;
}

// Conversions at the edge of the table (allowed_ips.cpp).
Key key_of(const IpAddress& address);
IpPrefix prefix_of(const Key& key, unsigned length, bool v6);

}  // namespace allowed_ips_detail

// Value: a small copyable, equality-comparable handle (a peer pointer or id).
template <typename Value>
class AllowedIps {
  using Key = allowed_ips_detail::Key;

 public:
  AllowedIps() = default;
  AllowedIps(AllowedIps&&) noexcept = default;
  AllowedIps& operator=(AllowedIps&&) noexcept = default;

  // Adds prefix (host bits masked off) for value. An identical prefix already present is
  // re-owned by value, as WireGuard moves a prefix from one peer to another. False, and
  // nothing changes, if the length exceeds the family's bits.
  bool insert(const IpPrefix& prefix, Value value) {
    const unsigned bits = family_bits(prefix.address);
    if (prefix.length > bits) return false;
    const Key key =
        allowed_ips_detail::masked(allowed_ips_detail::key_of(prefix.address), prefix.length);
    std::unique_ptr<Node>* slot = &root_for(prefix.address);
    for (;;) {
      Node* node = slot->get();
      if (node == nullptr) {
        *slot = make_node(key, prefix.length, value);
        ++size_;
        return true;
      }
      const unsigned length = prefix.length;
      const unsigned shared = allowed_ips_detail::common_length(
          node->key, key, node->length < length ? node->length : length);
      if (shared == node->length && shared == length) {  // the same prefix
        if (!node->value) ++size_;
        node->value = value;
        return true;
      }
      if (shared == node->length) {  // node is a shorter prefix of ours: go down
        slot = &node->children[allowed_ips_detail::bit_at(key, node->length)];
        continue;
      }
      if (shared == length) {  // ours is a shorter prefix of node: put it above
        auto above = make_node(key, length, value);
        above->children[allowed_ips_detail::bit_at(node->key, length)] = std::move(*slot);
        *slot = std::move(above);
        ++size_;
        return true;
      }
      // They part ways after `shared` bits: a fork there with both below it.
      auto fork = std::make_unique<Node>();
      fork->key = allowed_ips_detail::masked(key, shared);
      fork->length = static_cast<std::uint8_t>(shared);
      fork->children[allowed_ips_detail::bit_at(key, shared)] = make_node(key, length, value);
      fork->children[allowed_ips_detail::bit_at(node->key, shared)] = std::move(*slot);
      *slot = std::move(fork);
      ++size_;
      return true;
    }
  }

  // Removes exactly this prefix (host bits masked off). False if it was not present.
  bool remove(const IpPrefix& prefix) {
    if (prefix.length > family_bits(prefix.address)) return false;
    const Key key =
        allowed_ips_detail::masked(allowed_ips_detail::key_of(prefix.address), prefix.length);
    return remove_at(root_for(prefix.address), key, prefix.length);
  }

  // Removes every prefix owned by value (a peer being removed or its list replaced).
  void remove_value(Value value) {
    remove_value_at(root_v4_, value);
    remove_value_at(root_v6_, value);
  }

  std::optional<Value> lookup(const IpAddress& address) const {
    return address.is_v4() ? lookup_v4(address.bytes()) : lookup_v6(address.bytes());
  }
  // Fast paths straight from a packet header's address field (network order).
  std::optional<Value> lookup_v4(const std::uint8_t* four_bytes) const {
    return find(root_v4_.get(), allowed_ips_detail::key_v4(four_bytes), 32);
  }
  std::optional<Value> lookup_v6(const std::uint8_t* sixteen_bytes) const {
    return find(root_v6_.get(), allowed_ips_detail::key_v6(sixteen_bytes), 128);
  }

  // Every prefix owned by value: IPv4 first, then by address, a prefix before longer ones.
  std::vector<IpPrefix> prefixes_of(Value value) const {
    std::vector<IpPrefix> out;
    for_each([&](const IpPrefix& prefix, const Value& owner) {
      if (owner == value) out.push_back(prefix);
    });
    return out;
  }

  // Calls f(const IpPrefix&, const Value&) for every prefix, in the order of prefixes_of.
  template <typename F>
  void for_each(F&& f) const {
    visit(root_v4_.get(), false, f);
    visit(root_v6_.get(), true, f);
  }

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() {
    root_v4_.reset();
    root_v6_.reset();
    size_ = 0;
  }

 private:
  struct Node {
    Key key;  // masked to length bits
    std::uint8_t length = 0;
    std::optional<Value> value;  // empty: a fork, which always has two children
    std::array<std::unique_ptr<Node>, 2> children;
  };

  static unsigned family_bits(const IpAddress& address) { return address.is_v4() ? 32 : 128; }
  std::unique_ptr<Node>& root_for(const IpAddress& address) {
    return address.is_v4() ? root_v4_ : root_v6_;
  }

  static std::unique_ptr<Node> make_node(const Key& key, unsigned length, Value value) {
    auto node = std::make_unique<Node>();
    node->key = key;
    node->length = static_cast<std::uint8_t>(length);
    node->value = value;
    return node;
  }

  // Walks down while the node's prefix contains the address; the last owner seen is the
  // longest match.
  static std::optional<Value> find(const Node* node, const Key& key, unsigned bits) {
    std::optional<Value> best;
    while (node != nullptr && allowed_ips_detail::prefix_contains(node->key, node->length, key)) {
      if (node->value) best = node->value;
      if (node->length >= bits) break;
      node = node->children[allowed_ips_detail::bit_at(key, node->length)].get();
    }
    return best;
  }

  // A node that owns nothing must fork; with one child left it is replaced by that child and
  // with none it goes away.
  static void compact(std::unique_ptr<Node>& slot) {
    Node* node = slot.get();
    if (node == nullptr || node->value) return;
    if (node->children[0] && node->children[1]) return;
    std::unique_ptr<Node> only = std::move(node->children[node->children[0] ? 0 : 1]);
    slot = std::move(only);
  }

  // Depth is bounded by the family's bits (at most 129 nodes on a path).
  bool remove_at(std::unique_ptr<Node>& slot, const Key& key, unsigned length) {
    Node* node = slot.get();
    if (node == nullptr || node->length > length ||
        !allowed_ips_detail::prefix_contains(node->key, node->length, key))
      return false;
    if (node->length == length) {
      if (!node->value) return false;  // a fork, not a stored prefix
      node->value.reset();
      --size_;
      compact(slot);
      return true;
    }
    if (!remove_at(node->children[allowed_ips_detail::bit_at(key, node->length)], key, length))
      return false;
    compact(slot);
    return true;
  }

  void remove_value_at(std::unique_ptr<Node>& slot, const Value& value) {
    Node* node = slot.get();
    if (node == nullptr) return;
    remove_value_at(node->children[0], value);
    remove_value_at(node->children[1], value);
    if (node->value && *node->value == value) {
      node->value.reset();
      --size_;
    }
    compact(slot);
  }

  template <typename F>
  static void visit(const Node* node, bool v6, F& f) {
    if (node == nullptr) return;
    if (node->value) f(allowed_ips_detail::prefix_of(node->key, node->length, v6), *node->value);
    visit(node->children[0].get(), v6, f);
    visit(node->children[1].get(), v6, f);
  }

  std::unique_ptr<Node> root_v4_;
  std::unique_ptr<Node> root_v6_;
  std::size_t size_ = 0;
};

}  // namespace knit::wg
