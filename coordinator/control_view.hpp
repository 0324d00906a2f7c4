// The stored records as the control protocol shows them (control/messages.hpp), for the server:
// peer-map entries, the relay map, a registered node's assignment, and why a join was refused.
#pragma once

#include <string_view>

#include "control/error_code.hpp"
#include "control/messages.hpp"
#include "control/peer_codec.hpp"
#include "control/token.hpp"
#include "coordinator/records.hpp"
#include "coordinator/store.hpp"
#include "coordinator/tokens.hpp"

namespace knit::coordinator {

control::PeerInfo peer_info(const Node& node);
control::NodeAssignment node_assignment(const Node& node);
control::MeshInfo mesh_info(const MeshSettings& mesh);
// What every node's IPv6 address starts with (the ULA /48 and subnet 0, ipam.hpp), so peer
// entries can leave it out.
control::V6Base v6_base_of(const MeshSettings& mesh);
// Addresses that are not HOST:PORT (never stored so) are left out.
control::RelayInfo relay_info(const Relay& relay);

// The wire code for a refused token (check != ok): unknown and wrong_kind are token_invalid.
control::ErrorCode error_code(TokenCheck check);

// A presented join token as the store checks it: its id and the hash of its secret.
PresentedToken presented_token(const control::JoinToken& token);

}  // namespace knit::coordinator
