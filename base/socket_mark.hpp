// The mark knitd puts on its own sockets (SO_MARK), so that policy routing can keep them on the
// underlay while the default route goes through the mesh to an exit node (agent/exit_plan.hpp:
// "not fwmark MARK/MASK lookup TABLE"). One value for the process: knitd sets it once at start,
// before it opens any socket; other programs (knit-relay, tests) leave it 0 and mark nothing.
// Marking needs CAP_NET_ADMIN; without it the socket is left unmarked (best effort, logged once
// by the caller that cares).
#pragma once

#include <cstdint>

namespace knit {

// 0x4b6e0000/0xffff0000 ("Kn" in the upper half): other users of the mark keep the low 16 bits
// (wg-quick's marks are small numbers; Tailscale's 0x80000/0xff0000 does not match it).
inline constexpr std::uint32_t kUnderlayMark = 0x4b6e0000u;
inline constexpr std::uint32_t kUnderlayMarkMask = 0xffff0000u;

void set_underlay_mark(std::uint32_t mark);  // 0: mark nothing
std::uint32_t underlay_mark();
// SO_MARK = underlay_mark() on fd, when it is nonzero. False when the kernel refused.
bool mark_underlay_socket(int fd);

}  // namespace knit
