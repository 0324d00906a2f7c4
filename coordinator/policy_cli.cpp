#include "coordinator/policy_cli.hpp"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <ostream>

#include "base/bytes.hpp"
#include "coordinator/store.hpp"
#include "coordinator/tokens.hpp"
#include "policy/limits.hpp"

namespace knit::coordinator {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CliError("cannot read " + path);
  std::string text;
  char buffer[65536];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > policy::kMaxDocumentBytes)
      throw CliError(path + " is over " + std::to_string(policy::kMaxDocumentBytes) + " bytes");
  }
  return text;
}

// Parses and validates `text` against the mesh; throws CliError "WHERE:LINE:COLUMN: what".
policy::Document validated(const std::string& text, const std::string& where, const policy::Mesh& mesh) {
  auto parsed = policy::parse_document(text);
  const auto fail = [&](const policy::PolicyError& e) {
    throw CliError(where + ":" + std::to_string(e.at.line) + ":" + std::to_string(e.at.column) + ": " + e.message +
                   " (nothing changed)");
  };
  if (auto* e = std::get_if<policy::PolicyError>(&parsed)) fail(*e);
  policy::Document doc = std::move(std::get<policy::Document>(parsed));
  if (auto e = policy::validate(doc, mesh)) fail(*e);
  return doc;
}

std::string summary(const policy::Document& doc) {
  return std::to_string(doc.rules.size()) + " rules, " + std::to_string(doc.groups.size()) + " groups, " +
         std::to_string(doc.hosts.size()) + " hosts, " + std::to_string(doc.tests.size()) + " tests passed";
}

policy::Selector selector_or_throw(const std::string& text) {
  std::string why;
  auto s = policy::parse_selector(text, &why);
  if (!s) throw CliError(why);
  if (s->kind == policy::Selector::Kind::any || s->kind == policy::Selector::Kind::group)
    throw CliError("'" + text + "': name one node, tag, host or address");
  return *s;
}

std::string bare_tag(const std::string& text) {
  const std::string tag = text.rfind("tag:", 0) == 0 ? text.substr(4) : text;
  if (!valid_tag(tag)) throw CliError("invalid tag '" + text + "': use tag:NAME, NAME 1 to 63 of a-z 0-9 - _");
  return tag;
}

void add_tag_command(CLI::App& nodes, bool add, const CliGlobals& globals, CliContext& ctx, CliAction& action) {
  auto name = std::make_shared<std::string>();
  auto tags = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = nodes.add_subcommand(add ? "tag" : "untag",
                                       add ? "give a node tags (tag:NAME) for the access policy"
                                           : "take tags an admin gave a node away (its token's stay)");
  cmd->add_option("NAME", *name, "the node's name")->required();
  cmd->add_option("TAG", *tags, "tag:NAME")->required();
  cmd->callback([&globals, &ctx, &action, name, tags, add] {
    action = [&globals, &ctx, name, tags, add] {
      auto store = open_existing_store(globals);
      auto node = take(store->find_node_by_name(*name));
      if (!node) throw CliError("no node is called '" + *name + "'");
      PolicySettings settings = take(store->policy_settings());
      std::vector<std::string>& list = settings.admin_tags[to_base64(node->node_key)];
      for (const std::string& text : *tags) {
        const std::string tag = bare_tag(text);
        const auto it = std::find(list.begin(), list.end(), tag);
        if (add && it == list.end()) list.push_back(tag);
        if (!add && it != list.end()) list.erase(it);
      }
      if (!settings.document.empty()) {  // the policy's tests must still pass
        const policy::Mesh mesh = policy_mesh(take(store->list_nodes()), settings);
        validated(settings.document, "the stored policy", mesh);
      }
      check(store->set_policy_settings(settings));
      const std::vector<std::string> all = tags_of(*node, settings);
      ctx.out << node->name << ":";
      for (const std::string& t : all) ctx.out << " tag:" << t;
      ctx.out << (all.empty() ? " no tags\n" : "\n");
      return 0;
    };
  });
}

}  // namespace

void add_policy_commands(CLI::App& app, const CliGlobals& globals, CliContext& ctx, CliAction& action) {
  CLI::App* pol = app.add_subcommand("policy", "the access policy: who may reach what");
  pol->require_subcommand(1);
  pol->add_subcommand("get", "print the stored policy")->callback([&globals, &ctx, &action] {
    action = [&globals, &ctx] {
      auto store = open_existing_store(globals);
      const PolicySettings settings = take(store->policy_settings());
      if (settings.document.empty()) ctx.err << "no policy is set: every node may reach every other\n";
      ctx.out << settings.document;
      return 0;
    };
  });
  auto file = std::make_shared<std::string>();
  CLI::App* set = pol->add_subcommand("set", "validate FILE (names, ports, its tests) and make it the policy");
  set->add_option("FILE", *file, "the policy document (JSON with comments)")->required();
  set->callback([&globals, &ctx, &action, file] {
    action = [&globals, &ctx, file] {
      const std::string text = read_file(*file);
      auto store = open_existing_store(globals);
      PolicySettings settings = take(store->policy_settings());
      const policy::Document doc = validated(text, *file, policy_mesh(take(store->list_nodes()), settings));
      settings.document = text;
      check(store->set_policy_settings(settings));
      ctx.out << "Policy set: " << summary(doc) << ". Agents enforce it within seconds.\n";
      return 0;
    };
  });
  pol->add_subcommand("clear", "remove the policy: every node may reach every other")->callback([&globals, &ctx, &action] {
    action = [&globals, &ctx] {
      auto store = open_existing_store(globals);
      PolicySettings settings = take(store->policy_settings());
      settings.document.clear();
      check(store->set_policy_settings(settings));
      ctx.out << "Policy removed: the mesh is open.\n";
      return 0;
    };
  });
  auto test_file = std::make_shared<std::string>();
  CLI::App* test = pol->add_subcommand("test", "validate FILE against the mesh without storing it");
  test->add_option("FILE", *test_file, "the policy document")->required();
  test->callback([&globals, &ctx, &action, test_file] {
    action = [&globals, &ctx, test_file] {
      const std::string text = read_file(*test_file);
      auto store = open_existing_store(globals);
      const PolicySettings settings = take(store->policy_settings());
      const policy::Document doc = validated(text, *test_file, policy_mesh(take(store->list_nodes()), settings));
      ctx.out << "ok: " << summary(doc) << "\n";
      return 0;
    };
  });
  auto src = std::make_shared<std::string>(), dst = std::make_shared<std::string>(), what = std::make_shared<std::string>();
  CLI::App* chk = pol->add_subcommand("check", "would the policy let SRC reach DST on PORT/PROTO?");
  chk->add_option("SRC", *src, "node, tag:NAME, host or address")->required();
  chk->add_option("DST", *dst, "node, tag:NAME, host or address")->required();
  chk->add_option("PORT/PROTO", *what, "5432/tcp, 53/udp or icmp")->required();
  chk->callback([&globals, &ctx, &action, src, dst, what] {
    action = [&globals, &ctx, src, dst, what] {
      const auto pp = policy::parse_port_protocol(*what);
      if (!pp) throw CliError("'" + *what + "' is not PORT/PROTO (5432/tcp, 53/udp, icmp)");
      const policy::Selector s = selector_or_throw(*src), d = selector_or_throw(*dst);
      auto store = open_existing_store(globals);
      const PolicySettings settings = take(store->policy_settings());
      if (settings.document.empty()) {
        ctx.out << "allowed: no policy is set (the mesh is open)\n";
        return 0;
      }
      auto parsed = policy::parse_document(settings.document);
      if (auto* e = std::get_if<policy::PolicyError>(&parsed)) throw CliError("the stored policy: " + e->describe());
      const policy::Document& doc = std::get<policy::Document>(parsed);
      std::string why;
      const auto answers = policy::check(doc, policy_mesh(take(store->list_nodes()), settings), s, d, pp->first,
                                         pp->second, &why);
      if (answers.empty()) throw CliError(why);
      bool all = true;
      for (const policy::CheckAnswer& a : answers) {
        all = all && a.rule.has_value();
        ctx.out << (a.rule ? "allowed: " : "denied: ") << *src << " (" << a.src.to_string() << ") -> " << a.node << " ("
                << a.dst.to_string() << ") " << *what;
        if (a.rule) ctx.out << " by " << policy::rule_label(doc, *a.rule) << "\n";
        else ctx.out << ": no rule accepts it\n";
      }
      return all ? 0 : 1;
    };
  });
  if (CLI::App* nodes = app.get_subcommand("nodes")) {
    add_tag_command(*nodes, true, globals, ctx, action);
    add_tag_command(*nodes, false, globals, ctx, action);
  }
}

}  // namespace knit::coordinator
