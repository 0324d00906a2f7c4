// The policy document parser (policy/document.hpp) on any text, then validation and
// compilation against a small fixed mesh. Properties: an error always has a position inside
// the text; a document that parses compiles for every node, and what it compiles to survives
// the wire form unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.hpp"
#include "policy/compile.hpp"
#include "policy/limits.hpp"
#include "policy/wire.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = policy::parse_document(text);
  if (auto* e = std::get_if<policy::PolicyError>(&parsed)) {
    KNIT_FUZZ_CHECK(e->at.line >= 1 && e->at.column >= 1 && !e->message.empty());
    return 0;
  }
  static const policy::Mesh mesh = [] {
    policy::Mesh m;
    m.nodes.push_back({"web-1", {"web"}, {*IpAddress::parse("100.64.0.1"), *IpAddress::parse("fd7a::1")}, {}});
    m.nodes.push_back({"db-1", {"db"}, {*IpAddress::parse("100.64.0.2"), *IpAddress::parse("fd7a::2")},
                       {*IpPrefix::parse("10.1.0.0/16")}});
    return m;
  }();
  const policy::Document& doc = std::get<policy::Document>(parsed);
  (void)policy::validate(doc, mesh);
  for (const policy::MeshNode& node : mesh.nodes) {
    const policy::RuleSet set = policy::compile_for(doc, mesh, node);
    std::uint64_t version = 0;
    policy::RuleSet back;
    const std::string wire = policy::encode_rules(1, set);
    if (wire.size() > policy::kMaxWireBytes) continue;
    KNIT_FUZZ_CHECK(policy::decode_rules(wire, version, back) == policy::WireError::none);
    KNIT_FUZZ_CHECK(back == set);
  }
  return 0;
}
