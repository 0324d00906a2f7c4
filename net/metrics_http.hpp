// The little HTTP/1.1 a metrics scrape needs (RFC 9112), sans I/O: is the request in a buffer
// complete, and is it `GET /metrics`? And the bytes of the answer.
//
//   GET /metrics HTTP/1.1\r\n          request-line = method SP request-target SP HTTP-version
//   Host: 127.0.0.1:9100\r\n           header fields: read only to find the end and to refuse
//   Accept: text/plain\r\n             a body (Content-Length other than 0, Transfer-Encoding)
//   \r\n
//
// The answer always closes the connection (Connection: close): one request per connection keeps
// the server's state to one buffer and one deadline. A bare LF is accepted as a line end
// (RFC 9112 §2.2). Anything else, a request-target other than /metrics (a query is ignored),
// a method other than GET (or HEAD), a body, or a control character in the head, is refused.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace knit::net {

enum class RequestCheck {
  incomplete,          // no end of head yet, and still under the size bound: read more
  metrics,             // GET /metrics: answer 200 with the body
  metrics_head,        // HEAD /metrics: answer 200 without the body
  not_found,           // 404: another path
  method_not_allowed,  // 405: another method
  bad_request,         // 400: not a request we understand
  too_large,           // 431: the head is over the size bound
};

// Looks at the bytes received so far. max_head bounds the head (request line and headers,
// with the blank line).
RequestCheck check_request(std::string_view received, std::size_t max_head);

// The whole answer for a check other than `incomplete`; body only used for metrics.
std::string make_response(RequestCheck check, std::string_view body);

}  // namespace knit::net
