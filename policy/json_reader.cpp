#include "policy/json_reader.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "policy/limits.hpp"

namespace knit::policy {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_bare(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
         c == '+' || c == '.';
}

class Lines {
 public:
  explicit Lines(std::string_view text) {
    starts_.push_back(0);
    for (std::size_t i = 0; i < text.size(); ++i)
      if (text[i] == '\n') starts_.push_back(i + 1);
  }
  Position at(std::size_t offset) const {
    const auto it = std::upper_bound(starts_.begin(), starts_.end(), offset);
    const std::size_t line = static_cast<std::size_t>(it - starts_.begin());
    return {static_cast<std::uint32_t>(line), static_cast<std::uint32_t>(offset - starts_[line - 1] + 1)};
  }

 private:
  std::vector<std::size_t> starts_;
};

// Blanks comments (newlines kept), in place. Returns the offset of an unterminated block
// comment, or npos.
std::size_t blank_comments(std::string& s) {
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') { in_string = true; continue; }
    if (c != '/' || i + 1 >= s.size()) continue;
    if (s[i + 1] == '/') {
      while (i < s.size() && s[i] != '\n') s[i++] = ' ';
    } else if (s[i + 1] == '*') {
      const std::size_t start = i;
      const std::size_t end = s.find("*/", i + 2);
      if (end == std::string::npos) return start;
      for (; i < end + 2; ++i)
        if (s[i] != '\n') s[i] = ' ';
      --i;
    }
  }
  return std::string::npos;
}

// Blanks commas before `]` or `}` and notes where each value (and key) starts, in order.
void blank_trailing_commas(std::string& s, std::vector<std::size_t>& starts) {
  bool in_string = false;
  bool in_bare = false;
  char last = 0;  // the last significant character before this one
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    const char before = last;
    if (!is_space(c)) last = c;
    const bool bare = is_bare(c);
    if (bare && !in_bare) starts.push_back(i);
    in_bare = bare;
    if (c == '"') {
      in_string = true;
      starts.push_back(i);
    } else if (c == '{' || c == '[') {
      starts.push_back(i);
    } else if (c == ',') {
      std::size_t j = i + 1;
      while (j < s.size() && is_space(s[j])) ++j;
      // Only after a value: "[,]" and ",," stay errors for nlohmann to report.
      const bool after_value = before != 0 && before != '[' && before != '{' && before != ',' && before != ':';
      if (after_value && j < s.size() && (s[j] == ']' || s[j] == '}')) s[i] = ' ';
    }
  }
}

// Builds the tree from nlohmann's SAX events; each value takes the next noted start.
class TreeBuilder : public nlohmann::json_sax<nlohmann::json> {
 public:
  TreeBuilder(const std::vector<std::size_t>& starts, const Lines& lines) : starts_(starts), lines_(lines) {}

  bool null() override { return leaf(JsonNode::Kind::null) != nullptr; }
  bool boolean(bool v) override {
    JsonNode* n = leaf(JsonNode::Kind::boolean);
    if (n) n->boolean = v;
    return n != nullptr;
  }
  bool number_integer(number_integer_t v) override { return number(std::to_string(v)); }
  bool number_unsigned(number_unsigned_t v) override { return number(std::to_string(v)); }
  bool number_float(number_float_t, const string_t& s) override { return number(s); }
  bool string(string_t& v) override {
    JsonNode* n = leaf(JsonNode::Kind::string);
    if (n) n->text = std::move(v);
    return n != nullptr;
  }
  bool binary(binary_t&) override { return fail(0, "binary values are not JSON"); }
  bool start_object(std::size_t) override { return open(JsonNode::Kind::object); }
  bool end_object() override { stack_.pop_back(); return true; }
  bool start_array(std::size_t) override { return open(JsonNode::Kind::array); }
  bool end_array() override { stack_.pop_back(); return true; }
  bool key(string_t& k) override {
    const std::size_t at = next_start();
    JsonNode& obj = *stack_.back();
    if (std::find(obj.keys.begin(), obj.keys.end(), k) != obj.keys.end())
      return fail(at, "duplicate key \"" + k + "\"");
    obj.keys.push_back(std::move(k));
    obj.key_at.push_back(lines_.at(at));
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    // nlohmann's message: "[json.exception.parse_error.101] parse error at line L, column C: what".
    std::string what = ex.what();
    if (const std::size_t colon = what.find(": "); colon != std::string::npos) what = what.substr(colon + 2);
    return fail(position == 0 ? 0 : position - 1, "invalid JSON: " + what);
  }

  JsonNode root;
  std::optional<ReadError> error;

 private:
  std::size_t next_start() { return index_ < starts_.size() ? starts_[index_++] : (starts_.empty() ? 0 : starts_.back()); }
  bool fail(std::size_t offset, std::string message) {
    if (!error) error = ReadError{lines_.at(offset), std::move(message)};
    return false;
  }
  JsonNode* leaf(JsonNode::Kind kind) {
    const std::size_t at = next_start();
    if (++count_ > kMaxJsonValues) {
      fail(at, "too many values (at most " + std::to_string(kMaxJsonValues) + ")");
      return nullptr;
    }
    JsonNode* n = nullptr;
    if (stack_.empty()) {
      if (started_) return nullptr;
      started_ = true;
      n = &root;
    } else {
      stack_.back()->items.emplace_back();
      n = &stack_.back()->items.back();
    }
    n->kind = kind;
    n->at = lines_.at(at);
    return n;
  }
  bool number(const std::string& spelling) {
    JsonNode* n = leaf(JsonNode::Kind::number);
    if (n) n->text = spelling;
    return n != nullptr;
  }
  bool open(JsonNode::Kind kind) {
    if (stack_.size() >= kMaxJsonDepth) {
      const std::size_t at = index_ < starts_.size() ? starts_[index_] : 0;
      return fail(at, "nested too deep (at most " + std::to_string(kMaxJsonDepth) + " levels)");
    }
    JsonNode* n = leaf(kind);
    if (!n) return false;
    stack_.push_back(n);  // items of a parent never move while a child is open
    return true;
  }

  const std::vector<std::size_t>& starts_;
  const Lines& lines_;
  std::vector<JsonNode*> stack_;
  std::size_t index_ = 0;
  std::size_t count_ = 0;
  bool started_ = false;
};

}  // namespace

const JsonNode* JsonNode::find(std::string_view key) const {
  for (std::size_t i = 0; i < keys.size(); ++i)
    if (keys[i] == key) return &items[i];
  return nullptr;
}

const char* kind_name(JsonNode::Kind kind) {
  switch (kind) {
    case JsonNode::Kind::null: return "null";
    case JsonNode::Kind::boolean: return "a boolean";
    case JsonNode::Kind::number: return "a number";
    case JsonNode::Kind::string: return "a string";
    case JsonNode::Kind::array: return "an array";
    case JsonNode::Kind::object: return "an object";
  }
  return "?";
}

std::variant<JsonNode, ReadError> read_json(std::string_view text) {
  if (text.size() > kMaxDocumentBytes)
    return ReadError{{1, 1}, "the document is " + std::to_string(text.size()) + " bytes (at most " +
                                 std::to_string(kMaxDocumentBytes) + ")"};
  std::string s(text);
  const Lines lines(s);
  if (const std::size_t open = blank_comments(s); open != std::string::npos)
    return ReadError{lines.at(open), "unterminated /* comment"};
  std::vector<std::size_t> starts;
  blank_trailing_commas(s, starts);
  TreeBuilder builder(starts, lines);
  const bool ok = nlohmann::json::sax_parse(s, &builder, nlohmann::json::input_format_t::json, true, false);
  if (builder.error) return *builder.error;
  if (!ok) return ReadError{{1, 1}, "invalid JSON"};
  return std::move(builder.root);
}

}  // namespace knit::policy
