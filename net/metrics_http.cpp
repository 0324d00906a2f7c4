#include "net/metrics_http.hpp"

#include <algorithm>
#include <cctype>

#include "base/metrics.hpp"

namespace knit::net {

namespace {

// Where the head ends (just past the blank line), or npos.
std::size_t end_of_head(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\n') continue;
    if (i + 1 < text.size() && text[i + 1] == '\n') return i + 2;
    if (i + 2 < text.size() && text[i + 1] == '\r' && text[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

// Splits off one line (without its CR LF or LF).
std::string_view next_line(std::string_view& rest) {
  const std::size_t lf = rest.find('\n');
  std::string_view line = rest.substr(0, lf);
  rest = lf == std::string_view::npos ? std::string_view() : rest.substr(lf + 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool has_control_characters(std::string_view head) {
  for (char c : head) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\r' && c != '\n' && c != '\t') || u == 0x7f) return true;
  }
  return false;
}

}  // namespace

RequestCheck check_request(std::string_view received, std::size_t max_head) {
  const std::size_t end = end_of_head(received);
  if (end == std::string_view::npos)
    return received.size() >= max_head ? RequestCheck::too_large : RequestCheck::incomplete;
  if (end > max_head) return RequestCheck::too_large;
  std::string_view head = received.substr(0, end);
  if (has_control_characters(head)) return RequestCheck::bad_request;

  // request-line = method SP request-target SP HTTP-version (RFC 9112 §3)
  const std::string_view line = next_line(head);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return RequestCheck::bad_request;
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || target.empty() || (version != "HTTP/1.1" && version != "HTTP/1.0"))
    return RequestCheck::bad_request;

  // Header fields: name ":" value, no whitespace before the colon (RFC 9112 §5.1).
  for (std::string_view field = next_line(head); !field.empty(); field = next_line(head)) {
    const std::size_t colon = field.find(':');
    if (colon == 0 || colon == std::string_view::npos) return RequestCheck::bad_request;
    const std::string_view name = field.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) return RequestCheck::bad_request;
    const std::string_view value = trim(field.substr(colon + 1));
    if (iequals(name, "Transfer-Encoding")) return RequestCheck::bad_request;
    if (iequals(name, "Content-Length") && value != "0") return RequestCheck::bad_request;
  }

  if (method != "GET" && method != "HEAD") return RequestCheck::method_not_allowed;
  if (const std::size_t query = target.find('?'); query != std::string_view::npos)
    target = target.substr(0, query);
  if (target != "/metrics") return RequestCheck::not_found;
  return method == "GET" ? RequestCheck::metrics : RequestCheck::metrics_head;
}

std::string make_response(RequestCheck check, std::string_view body) {
  std::string_view status;
  std::string_view type = "text/plain; charset=utf-8";
  std::string text;
  bool send_body = true;
  switch (check) {
    case RequestCheck::metrics:
    case RequestCheck::metrics_head:
      status = "200 OK";
      type = metrics::kContentType;
      text = body;
      send_body = check == RequestCheck::metrics;
      break;
    case RequestCheck::not_found:
      status = "404 Not Found";
      text = "only /metrics is served here\n";
      break;
    case RequestCheck::method_not_allowed:
      status = "405 Method Not Allowed";
      text = "only GET /metrics is served here\n";
      break;
    case RequestCheck::too_large:
      status = "431 Request Header Fields Too Large";
      text = "request head too large\n";
      break;
    case RequestCheck::incomplete:
    case RequestCheck::bad_request:
      status = "400 Bad Request";
      text = "bad request\n";
      break;
  }
  std::string out = "HTTP/1.1 ";
  out += status;
  out += "\r\nContent-Type: ";
  out += type;
  out += "\r\nContent-Length: " + std::to_string(text.size());
  if (check == RequestCheck::method_not_allowed) out += "\r\nAllow: GET, HEAD";
  out += "\r\nConnection: close\r\n\r\n";
  if (send_body) out += text;
  return out;
}

}  // namespace knit::net
