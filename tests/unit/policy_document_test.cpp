// The policy document: JSON with comments and trailing commas, its shapes, and errors that
// say where (line, column) and what.
#include <gtest/gtest.h>

#include <random>

#include "policy/document.hpp"

using namespace knit;
using namespace knit::policy;

namespace {

Document parse_ok(std::string_view text) {
  auto r = parse_document(text);
  if (auto* e = std::get_if<PolicyError>(&r)) {
    ADD_FAILURE() << e->describe();
    return {};
  }
  return std::get<Document>(r);
}

PolicyError parse_bad(std::string_view text) {
  auto r = parse_document(text);
  if (auto* e = std::get_if<PolicyError>(&r)) return *e;
  ADD_FAILURE() << "accepted: " << text;
  return {};
}

}  // namespace

TEST(PolicyDocument, ParsesEverySection) {
  const Document doc = parse_ok(R"(// the mesh's policy
{
  /* groups of people's machines */
  "groups": {"group:ops": ["alice", "tag:admin",],},
  "hosts": {"office": "10.1.0.0/16", "nas": ["10.1.2.3", "fd00::3"]},
  "rules": [
    {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"], "proto": "tcp"},  // web to db
    {"action": "accept", "src": ["group:ops"], "dst": ["*:*"], "name": "ops anywhere"},
    {"action": "accept", "src": ["*"], "dst": ["office:22,80-90", "[fd00::1]:443", "fd00::/64:8080"]},
  ],
  "tests": [{"src": "alice", "accept": ["db:5432"], "deny": ["db:22"]}],
})");
  ASSERT_EQ(doc.groups.size(), 1u);
  EXPECT_EQ(doc.groups[0].name, "ops");
  EXPECT_EQ(doc.groups[0].members[1].kind, Selector::Kind::tag);
  ASSERT_EQ(doc.hosts.size(), 2u);
  EXPECT_EQ(doc.hosts[1].prefixes.size(), 2u);
  ASSERT_EQ(doc.rules.size(), 3u);
  EXPECT_EQ(doc.rules[0].protocols, kTcp);
  EXPECT_EQ(doc.rules[1].protocols, kAnyProtocol);
  EXPECT_EQ(doc.rules[1].name, "ops anywhere");
  EXPECT_TRUE(doc.rules[1].dst[0].all_ports());
  const auto& d = doc.rules[2].dst;
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].target.kind, Selector::Kind::name);
  ASSERT_EQ(d[0].ports.size(), 2u);
  EXPECT_EQ(d[0].ports[1], (PortRange{80, 90}));
  EXPECT_EQ(d[1].target.prefix.to_string(), "fd00::1/128");
  EXPECT_EQ(d[2].target.prefix.to_string(), "fd00::/64");
  EXPECT_EQ(doc.rules[0].at, (Position{7, 5}));
  EXPECT_EQ(rule_label(doc, 0), "rule 1 (line 7)");
  EXPECT_EQ(rule_label(doc, 1), "\"ops anywhere\" (line 8)");
  ASSERT_EQ(doc.tests.size(), 1u);
  EXPECT_EQ(doc.tests[0].protocols, kTcp);
}

TEST(PolicyDocument, EmptyObjectIsAPolicyThatDeniesEverything) {
  const Document doc = parse_ok("{}");
  EXPECT_TRUE(doc.rules.empty());
}

TEST(PolicyDocument, CommentMarkersInsideStringsAreText) {
  const Document doc = parse_ok(R"({"hosts": {"a": "10.0.0.1"}, "rules": [{"action": "accept",
    "src": ["a"], "dst": ["a:*"], "name": "x // not a comment /* nor this */"}]})");
  ASSERT_EQ(doc.rules.size(), 1u);
  EXPECT_EQ(doc.rules[0].name, "x // not a comment /* nor this */");
}

// Every malformed shape: the error names the place (line, column) and the problem.
struct BadCase {
  const char* text;
  std::uint32_t line, column;
  const char* says;
};

TEST(PolicyDocument, MalformedShapesSayWhere) {
  const BadCase cases[] = {
      {"", 1, 1, "invalid JSON"},
      {"{", 1, 2, "invalid JSON"},
      {"[]", 1, 1, "the policy must be an object"},
      {"{\"rules\": [}", 1, 12, "invalid JSON"},
      {"{\n  \"rulez\": []}", 2, 3, "unknown field \"rulez\""},
      {"{\"rules\": {}}", 1, 11, "\"rules\" must be an array"},
      {"{\"rules\": [1]}", 1, 12, "a rule must be an object"},
      {"{\"rules\": [{\"src\": [\"*\"], \"dst\": [\"*:*\"]}]}", 1, 12, "needs \"action\""},
      {"{\"rules\": [{\"action\": \"drop\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}", 1, 23, "the only action"},
      {"{\"rules\": [{\"action\": \"accept\", \"dst\": [\"*:*\"]}]}", 1, 12, "needs \"src\""},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"]}]}", 1, 12, "needs \"dst\""},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [], \"dst\": [\"*:*\"]}]}", 1, 40, "\"src\" is empty"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": []}]}", 1, 54, "\"dst\" is empty"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": \"*\", \"dst\": [\"*:*\"]}]}", 1, 40, "\"src\" must be an array"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [7], \"dst\": [\"*:*\"]}]}", 1, 41, "must be a string"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"db\"]}]}", 1, 55, "has no ports"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"db:0\"]}]}", 1, 55, "bad port \"0\""},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"db:65536\"]}]}", 1, 55, "bad port"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"db:90-80\"]}]}", 1, 55, "runs backwards"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"db:22,\"]}]}", 1, 55, "bad port \"\""},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"db:x\"]}]}", 1, 55, "bad port"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"[fd00::1:22\"]}]}", 1, 55, "[IPv6]:PORTS"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"10.0.0.1/8\"], \"dst\": [\"*:*\"]}]}", 1, 41, "bits set past"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"10.0.0.0/33\"], \"dst\": [\"*:*\"]}]}", 1, 41, "not *, tag:NAME"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"tag:\"], \"dst\": [\"*:*\"]}]}", 1, 41, "a tag name"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"group:a b\"], \"dst\": [\"*:*\"]}]}", 1, 41, "a group name"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"], \"proto\": \"sctp\"}]}", 1, 72, "unknown protocol"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"], \"name\": \"\"}]}", 1, 71, "a rule's name"},
      {"{\"rules\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"], \"extra\": 1}]}", 1, 63, "unknown field \"extra\""},
      {"{\"groups\": {\"ops\": []}}", 1, 13, "group:NAME"},
      {"{\"groups\": {\"group:ops\": [\"*\"]}}", 1, 27, "node names and tags"},
      {"{\"groups\": {\"group:ops\": [\"group:x\"]}}", 1, 27, "node names and tags"},
      {"{\"groups\": []}", 1, 12, "\"groups\" must be an object"},
      {"{\"hosts\": {\"a\": \"tag:x\"}}", 1, 17, "addresses and CIDRs"},
      {"{\"hosts\": {\"a\": []}}", 1, 17, "has no addresses"},
      {"{\"hosts\": {\"a.b\": \"10.0.0.1\"}}", 1, 12, "a host name"},
      {"{\"tests\": [{\"accept\": [\"a:1\"]}]}", 1, 12, "needs \"src\""},
      {"{\"tests\": [{\"src\": \"a\"}]}", 1, 12, "needs \"accept\" or \"deny\""},
      {"{\"tests\": [{\"src\": \"*\", \"accept\": [\"a:1\"]}]}", 1, 20, "one node"},
      {"{\"tests\": [{\"src\": \"a\", \"accept\": [\"a:*\"]}]}", 1, 36, "names its ports"},
      {"{\"tests\": [{\"src\": \"a\", \"proto\": \"icmp\", \"accept\": [\"a:22\"]}]}", 1, 53, "port *"},
      {"{\"tests\": [{\"src\": \"a\", \"proto\": \"any\", \"accept\": [\"a:22\"]}]}", 1, 34, "unknown protocol"},
      {"{\"rules\": [], \"rules\": []}", 1, 15, "duplicate key"},
      {"{\n  /* never closed\n}", 2, 3, "unterminated /* comment"},
      {"{\"rules\": [,]}", 1, 12, "invalid JSON"},
      {"{\"a\": [[[[[[[[[[1]]]]]]]]]]}", 1, 14, "nested too deep"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.text);
    const PolicyError e = parse_bad(c.text);
    EXPECT_NE(e.message.find(c.says), std::string::npos) << e.describe();
    EXPECT_EQ(e.at, (Position{c.line, c.column})) << e.describe();
  }
}

TEST(PolicyDocument, DescribeSaysLineAndColumn) {
  const PolicyError e = parse_bad("{\n\n   \"x\": 1}");
  EXPECT_EQ(e.describe().substr(0, 19), "line 3, column 4: u");
}

TEST(PolicyDocument, OversizedDocumentIsRefused) {
  std::string big = "{\"hosts\": {";
  while (big.size() < (600u << 10)) big += "\"h" + std::to_string(big.size()) + "\": \"10.0.0.1\", ";
  big += "}}";
  const PolicyError e = parse_bad(big);
  EXPECT_NE(e.message.find("bytes (at most"), std::string::npos);
}

TEST(PolicyDocument, DestinationsAndSelectors) {
  std::string why;
  auto d = parse_destination("tag:db:5432", &why);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->target.kind, Selector::Kind::tag);
  EXPECT_EQ(d->target.name, "db");
  EXPECT_EQ(d->ports, (std::vector<PortRange>{{5432, 5432}}));
  d = parse_destination("group:ops:*", &why);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->all_ports());
  d = parse_destination("10.1.0.0/16:22,80-90", &why);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->target.prefix.to_string(), "10.1.0.0/16");
  EXPECT_EQ(d->ports.size(), 2u);
  d = parse_destination("fd00::1:22", &why);  // the last colon starts the ports
  ASSERT_TRUE(d);
  EXPECT_EQ(d->target.prefix.to_string(), "fd00::1/128");
  EXPECT_FALSE(parse_destination("db:1-2-3", &why));
  std::string many = "db:";
  for (int i = 1; i <= 65; ++i) many += std::to_string(i) + ",";
  many.pop_back();
  EXPECT_FALSE(parse_destination(many, &why));
  EXPECT_NE(why.find("at most 64"), std::string::npos);
  // A bare number is not a name.
  EXPECT_FALSE(parse_selector("12345", &why));
}

// Random mutations of a valid document never crash and always end in a value or an error
// with a position inside the text.
TEST(PolicyDocument, RandomDocumentsNeverCrash) {
  const std::string base = R"({"groups": {"group:ops": ["alice", "tag:admin"]}, // c
  "hosts": {"office": "10.1.0.0/16"}, /* c */
  "rules": [{"action": "accept", "src": ["group:ops", "10.0.0.0/8"], "dst": ["tag:db:5432", "office:22,80-90"], "proto": "tcp"},],
  "tests": [{"src": "alice", "accept": ["db:5432"], "deny": ["db:22"]}]})";
  const std::string alphabet = "{}[]\",:/*-0123456789abcdefgtag:group*\\ \n";
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const std::size_t at = rng() % (text.size() + 1);
      switch (rng() % 3) {
        case 0: text.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        case 1: if (at < text.size()) text.erase(at, 1); break;
        default: if (at < text.size()) text[at] = alphabet[rng() % alphabet.size()]; break;
      }
    }
    auto r = parse_document(text);
    if (auto* e = std::get_if<PolicyError>(&r)) {
      EXPECT_GE(e->at.line, 1u);
      EXPECT_GE(e->at.column, 1u);
      EXPECT_FALSE(e->message.empty());
    }
  }
}
