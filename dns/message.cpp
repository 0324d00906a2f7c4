#include "dns/message.hpp"

#include <ldns/ldns.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "dns/constants.hpp"

namespace knit::dns {
namespace {

struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
struct RdfFree {
  void operator()(ldns_rdf* r) const { ldns_rdf_deep_free(r); }
};
struct CFree {
  void operator()(void* p) const { std::free(p); }
};
using Pkt = std::unique_ptr<ldns_pkt, PktFree>;
using Rdf = std::unique_ptr<ldns_rdf, RdfFree>;

Pkt parse_wire(ByteSpan wire) {
  ldns_pkt* raw = nullptr;
  if (ldns_wire2pkt(&raw, wire.data(), wire.size()) != LDNS_STATUS_OK) {
    if (raw) ldns_pkt_free(raw);
    return nullptr;
  }
  return Pkt(raw);
}

// The owner of rr as Query::name spells it.
std::string name_of(const ldns_rdf* owner) {
  if (!owner || ldns_rdf_get_type(owner) != LDNS_RDF_TYPE_DNAME) return "\\invalid";
  Rdf copy(ldns_rdf_clone(owner));
  if (!copy) return "\\invalid";
  ldns_dname2canonical(copy.get());
  std::unique_ptr<char, CFree> text(ldns_rdf2str(copy.get()));
  if (!text) return "\\invalid";
  std::string name(text.get());
  if (!name.empty() && name.back() == '.') name.pop_back();
  return name;
}

Bytes to_wire(const ldns_pkt* pkt) {
  std::uint8_t* out = nullptr;
  std::size_t size = 0;
  if (ldns_pkt2wire(&out, pkt, &size) != LDNS_STATUS_OK || !out) {
    std::free(out);
    return {};
  }
  Bytes bytes(out, out + size);
  std::free(out);
  return bytes;
}

ldns_rr* question_rr(const Query& query) {
  ldns_rr* rr = ldns_rr_new();
  if (!rr) return nullptr;
  ldns_rdf* owner = ldns_dname_new_frm_str(query.name.empty() ? "." : (query.name + ".").c_str());
  if (!owner) {
    ldns_rr_free(rr);
    return nullptr;
  }
  ldns_rr_set_owner(rr, owner);
  ldns_rr_set_type(rr, static_cast<ldns_rr_type>(query.qtype));
  ldns_rr_set_class(rr, static_cast<ldns_rr_class>(query.qclass));
  ldns_rr_set_question(rr, true);
  return rr;
}

// A response header for query: ID, QR, RD copied, RA.
Pkt response_for(const Query& query, Rcode rcode) {
  Pkt pkt(ldns_pkt_new());
  if (!pkt) return nullptr;
  ldns_pkt_set_id(pkt.get(), query.id);
  ldns_pkt_set_qr(pkt.get(), true);
  ldns_pkt_set_opcode(pkt.get(), LDNS_PACKET_QUERY);
  ldns_pkt_set_rd(pkt.get(), query.recursion_desired);
  ldns_pkt_set_ra(pkt.get(), true);
  ldns_pkt_set_rcode(pkt.get(), static_cast<std::uint8_t>(rcode));
  ldns_rr* q = question_rr(query);
  if (!q) return nullptr;
  ldns_pkt_push_rr(pkt.get(), LDNS_SECTION_QUESTION, q);
  if (query.edns) ldns_pkt_set_edns_udp_size(pkt.get(), static_cast<std::uint16_t>(kMaxUdpSize));
  return pkt;
}

ldns_rr* answer_rr(const Record& record) {
  ldns_rr* rr = ldns_rr_new();
  if (!rr) return nullptr;
  ldns_rdf* owner = ldns_dname_new_frm_str((record.name + ".").c_str());
  if (!owner) {
    ldns_rr_free(rr);
    return nullptr;
  }
  ldns_rr_set_owner(rr, owner);
  ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
  ldns_rr_set_ttl(rr, record.ttl);
  ldns_rdf* data = nullptr;
  if (const auto* ip = std::get_if<IpAddress>(&record.data)) {
    ldns_rr_set_type(rr, ip->is_v4() ? LDNS_RR_TYPE_A : LDNS_RR_TYPE_AAAA);
    data = ldns_rdf_new_frm_data(ip->is_v4() ? LDNS_RDF_TYPE_A : LDNS_RDF_TYPE_AAAA, ip->size(), ip->bytes());
  } else {
    ldns_rr_set_type(rr, LDNS_RR_TYPE_PTR);
    data = ldns_dname_new_frm_str((std::get<std::string>(record.data) + ".").c_str());
  }
  if (!data || !ldns_rr_push_rdf(rr, data)) {
    if (data) ldns_rdf_deep_free(data);
    ldns_rr_free(rr);
    return nullptr;
  }
  return rr;
}

ldns_rr* soa_rr(std::string_view zone) {
  const std::string z(zone);
  const std::string text = z + ". " + std::to_string(kNegativeCacheTtl) + " IN SOA ns." + z + ". hostmaster." + z +
                           ". 1 3600 600 86400 " + std::to_string(kNegativeCacheTtl);
  ldns_rr* rr = nullptr;
  if (ldns_rr_new_frm_str(&rr, text.c_str(), 0, nullptr, nullptr) != LDNS_STATUS_OK) return nullptr;
  return rr;
}

template <typename F>
void for_each_record(ldns_pkt* pkt, F&& f) {
  for (ldns_rr_list* list : {ldns_pkt_answer(pkt), ldns_pkt_authority(pkt), ldns_pkt_additional(pkt)}) {
    if (!list) continue;
    for (std::size_t i = 0; i < ldns_rr_list_rr_count(list); ++i) f(ldns_rr_list_rr(list, i), list == ldns_pkt_authority(pkt));
  }
}

}  // namespace

std::string_view to_string(QueryError error) {
  switch (error) {
    case QueryError::too_short: return "too_short";
    case QueryError::too_large: return "too_large";
    case QueryError::malformed: return "malformed";
    case QueryError::not_query: return "not_query";
    case QueryError::bad_opcode: return "bad_opcode";
    case QueryError::bad_counts: return "bad_counts";
  }
  return "unknown";
}

std::variant<Query, QueryError> parse_query(ByteSpan wire) {
  if (wire.size() < 12) return QueryError::too_short;
  if (wire.size() > kMaxQuerySize) return QueryError::too_large;
  // The header alone decides most refusals, before ldns allocates anything.
  if (wire[2] & 0x80) return QueryError::not_query;
  if (((wire[2] >> 3) & 0x0f) != 0) return QueryError::bad_opcode;
  const std::uint16_t qd = load_be16(wire.data() + 4);
  const std::uint16_t an = load_be16(wire.data() + 6);
  const std::uint16_t ns = load_be16(wire.data() + 8);
  const std::uint16_t ar = load_be16(wire.data() + 10);
  if (qd != 1 || an != 0 || ns != 0 || ar > 1) return QueryError::bad_counts;
  Pkt pkt = parse_wire(wire);
  if (!pkt) return QueryError::malformed;
  const ldns_rr_list* question = ldns_pkt_question(pkt.get());
  if (!question || ldns_rr_list_rr_count(question) != 1) return QueryError::bad_counts;
  // An additional record that is not OPT stays in the additional section.
  const ldns_rr_list* additional = ldns_pkt_additional(pkt.get());
  if (additional && ldns_rr_list_rr_count(additional) != 0) return QueryError::bad_counts;
  const ldns_rr* q = ldns_rr_list_rr(question, 0);
  Query query;
  query.id = ldns_pkt_id(pkt.get());
  query.recursion_desired = ldns_pkt_rd(pkt.get());
  query.name = name_of(ldns_rr_owner(q));
  if (query.name == "\\invalid") return QueryError::malformed;
  query.qtype = static_cast<std::uint16_t>(ldns_rr_get_type(q));
  query.qclass = static_cast<std::uint16_t>(ldns_rr_get_class(q));
  query.edns = ldns_pkt_edns(pkt.get());
  if (query.edns) query.udp_size = std::max<std::uint16_t>(512, ldns_pkt_edns_udp_size(pkt.get()));
  return query;
}

Bytes build_response(const Query& query, Rcode rcode, std::span<const Record> answers, std::string_view zone,
                     bool authoritative) {
  Pkt pkt = response_for(query, rcode);
  if (!pkt) return {};
  ldns_pkt_set_aa(pkt.get(), authoritative);
  for (const Record& record : answers) {
    ldns_rr* rr = answer_rr(record);
    if (!rr) return {};
    ldns_pkt_push_rr(pkt.get(), LDNS_SECTION_ANSWER, rr);
  }
  if (answers.empty() && !zone.empty()) {
    if (ldns_rr* soa = soa_rr(zone)) ldns_pkt_push_rr(pkt.get(), LDNS_SECTION_AUTHORITY, soa);
  }
  return to_wire(pkt.get());
}

Bytes build_error(const Query& query, Rcode rcode) { return build_response(query, rcode, {}, {}, false); }

std::optional<ResponseInfo> parse_response(ByteSpan wire) {
  if (wire.size() < 12 || wire.size() > kMaxResponseSize) return std::nullopt;
  if (!(wire[2] & 0x80)) return std::nullopt;
  if (load_be16(wire.data() + 4) != 1) return std::nullopt;
  Pkt pkt = parse_wire(wire);
  if (!pkt) return std::nullopt;
  const ldns_rr_list* question = ldns_pkt_question(pkt.get());
  if (!question || ldns_rr_list_rr_count(question) != 1) return std::nullopt;
  const ldns_rr* q = ldns_rr_list_rr(question, 0);
  ResponseInfo info;
  info.id = ldns_pkt_id(pkt.get());
  info.truncated = ldns_pkt_tc(pkt.get());
  info.rcode = static_cast<Rcode>(ldns_pkt_get_rcode(pkt.get()));
  info.name = name_of(ldns_rr_owner(q));
  info.qtype = static_cast<std::uint16_t>(ldns_rr_get_type(q));
  info.qclass = static_cast<std::uint16_t>(ldns_rr_get_class(q));
  std::uint32_t min_ttl = UINT32_MAX;
  for_each_record(pkt.get(), [&](ldns_rr* rr, bool authority) {
    info.has_records = true;
    std::uint32_t ttl = ldns_rr_ttl(rr);
    if (authority && ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA && ldns_rr_rd_count(rr) == 7)
      ttl = std::min(ttl, ldns_rdf2native_int32(ldns_rr_rdf(rr, 6)));
    min_ttl = std::min(min_ttl, ttl);
  });
  info.min_ttl = info.has_records ? min_ttl : 0;
  return info;
}

std::optional<Bytes> age_response(ByteSpan wire, std::uint32_t elapsed) {
  Pkt pkt = parse_wire(wire);
  if (!pkt) return std::nullopt;
  for_each_record(pkt.get(), [&](ldns_rr* rr, bool) {
    const std::uint32_t ttl = ldns_rr_ttl(rr);
    ldns_rr_set_ttl(rr, ttl > elapsed ? ttl - elapsed : 0);
  });
  Bytes out = to_wire(pkt.get());
  if (out.empty()) return std::nullopt;
  return out;
}

std::optional<Bytes> truncate_response(ByteSpan wire) {
  Pkt pkt = parse_wire(wire);
  if (!pkt) return std::nullopt;
  Pkt cut(ldns_pkt_new());
  if (!cut) return std::nullopt;
  ldns_pkt_set_id(cut.get(), ldns_pkt_id(pkt.get()));
  ldns_pkt_set_qr(cut.get(), true);
  ldns_pkt_set_opcode(cut.get(), ldns_pkt_get_opcode(pkt.get()));
  ldns_pkt_set_rd(cut.get(), ldns_pkt_rd(pkt.get()));
  ldns_pkt_set_ra(cut.get(), ldns_pkt_ra(pkt.get()));
  ldns_pkt_set_rcode(cut.get(), ldns_pkt_get_rcode(pkt.get()));
  ldns_pkt_set_tc(cut.get(), true);
  const ldns_rr_list* question = ldns_pkt_question(pkt.get());
  if (question && ldns_rr_list_rr_count(question) == 1)
    ldns_pkt_push_rr(cut.get(), LDNS_SECTION_QUESTION, ldns_rr_clone(ldns_rr_list_rr(question, 0)));
  Bytes out = to_wire(cut.get());
  if (out.empty()) return std::nullopt;
  return out;
}

}  // namespace knit::dns
