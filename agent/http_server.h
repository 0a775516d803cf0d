#pragma once
// HttpServer: a small read-only HTTP/1.1 endpoint (Boost.Beast) for status
// pages and metrics scrapers. It runs on the node's io_context thread, so a
// handler may read the node's state directly; handlers must answer at once
// (no waiting on the cluster), which is why the server serves only GET and
// HEAD.
//
// It must never hurt the node: every read and write has a deadline, the
// number of open connections is capped (one over the cap is closed at once),
// requests are size-limited, and anything malformed ends its connection.
// Beast lives only in http_server.cpp, to keep its compile cost there.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "common/clock.h"
#include "common/ids.h"

namespace rg::agent {

struct HttpAnswer {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct HttpLimits {
  std::size_t max_connections = 16;
  Duration read_timeout = milliseconds(5000);  // also bounds idle keep-alive and each write
  std::size_t max_header_bytes = 8 * 1024;
  std::size_t max_body_bytes = 16 * 1024;
};

struct HttpCounters {
  std::uint64_t requests = 0;
  std::uint64_t bad_requests = 0;         // malformed or oversized
  std::uint64_t refused_connections = 0;  // over max_connections
  std::uint64_t timeouts = 0;
};

class HttpServer {
 public:
  // Called for GET (and HEAD) requests with the request target (path and query).
  using Handler = std::function<HttpAnswer(std::string_view target)>;

  // Binds and starts accepting; throws std::runtime_error with a one-line
  // reason if the address cannot be bound.
  HttpServer(boost::asio::io_context& io, const Endpoint& at, Handler handler, HttpLimits limits = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Stops accepting and closes every open connection.
  void close();
  std::size_t connections() const;
  const HttpCounters& counters() const;

  struct State;  // shared with the connections, which may outlive the server object

 private:
  std::shared_ptr<State> state_;
};

}  // namespace rg::agent
