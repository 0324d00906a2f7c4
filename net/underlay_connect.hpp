// asio::async_connect over resolver results, with knit's underlay mark (base/socket_mark.hpp)
// set on the socket before each attempt: asio's own range connect opens the socket inside,
// where no option can be set first. Same contract: the handler gets the error of the last
// attempt (or success) and the endpoint connected to.
#pragma once

#include <asio.hpp>

#include <cstddef>
#include <system_error>
#include <utility>

#include "base/socket_mark.hpp"

namespace knit::net {

template <typename Handler>
void async_connect_underlay(asio::ip::tcp::socket& socket, asio::ip::tcp::resolver::results_type results,
                            Handler handler, std::size_t first = 0,
                            std::error_code last = asio::error::host_not_found) {
  auto at = results.begin();
  for (std::size_t i = 0; i < first && at != results.end(); ++i) ++at;
  for (std::size_t index = first; at != results.end(); ++at, ++index) {
    std::error_code ec;
    socket.close(ec);
    socket.open(at->endpoint().protocol(), ec);
    if (ec) {
      last = ec;
      continue;
    }
    mark_underlay_socket(socket.native_handle());
    const asio::ip::tcp::endpoint endpoint = at->endpoint();
    socket.async_connect(endpoint, [&socket, results, index, endpoint, handler = std::move(handler)](std::error_code e) mutable {
      if (!e || e == asio::error::operation_aborted) return handler(e, endpoint);
      async_connect_underlay(socket, results, std::move(handler), index + 1, e);
    });
    return;
  }
  handler(last, asio::ip::tcp::endpoint());
}

}  // namespace knit::net
