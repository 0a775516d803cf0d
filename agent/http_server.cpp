#include "agent/http_server.h"

#include <optional>
#include <set>
#include <stdexcept>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "common/log.h"

namespace rg::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
class Session;
}

struct HttpServer::State {
  explicit State(asio::io_context& io) : acceptor(io), retry(io) {}
  tcp::acceptor acceptor;
  asio::steady_timer retry;  // after an accept error (out of descriptors): no busy loop
  Handler handler;
  HttpLimits limits;
  HttpCounters counters;
  std::set<Session*> sessions;  // each removes itself when destroyed
  bool closed = false;
};

namespace {

bool parse_error(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::State> state)
      : stream_(std::move(socket)),
        buffer_(state->limits.max_header_bytes + state->limits.max_body_bytes),
        state_(std::move(state)) {
    state_->sessions.insert(this);
  }
  ~Session() { state_->sessions.erase(this); }

  void start() { read(); }

  void stop() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(state_->limits.max_header_bytes));
    parser_->body_limit(state_->limits.max_body_bytes);
    stream_.expires_after(state_->limits.read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (state_->closed) return;
    if (ec == beast::error::timeout) {
      ++state_->counters.timeouts;  // tcp_stream has closed the socket
      return;
    }
    if (parse_error(ec)) {
      ++state_->counters.bad_requests;
      http::response<http::string_body> res{http::status::bad_request, 11};
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "bad request: " + ec.message() + "\n";
      return answer(std::move(res), false);
    }
    if (ec) return stop();  // closed by the peer, reset, ...
    ++state_->counters.requests;
    const auto& req = parser_->get();
    http::response<http::string_body> res;
    res.version(req.version());
    bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && !head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "only GET and HEAD are served here\n";
    } else {
      HttpAnswer a;
      try {
        if (!state_->handler) return stop();
        a = state_->handler(std::string_view(req.target().data(), req.target().size()));
      } catch (const std::exception& e) {
        a = HttpAnswer{500, "text/plain; charset=utf-8", std::string("internal error: ") + e.what() + "\n"};
      }
      res.result(a.status);
      res.set(http::field::content_type, a.content_type);
      res.body() = std::move(a.body);
    }
    answer(std::move(res), req.keep_alive(), head);
  }

  // A HEAD answer carries the length the GET body would have, and no body.
  void answer(http::response<http::string_body> res, bool keep_alive, bool head = false) {
    res.set(http::field::server, "rolegrid");
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(keep_alive);
    res.prepare_payload();
    if (head) res.body().clear();
    res_ = std::move(res);
    stream_.expires_after(state_->limits.read_timeout);
    http::async_write(stream_, res_, [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
      if (ec == beast::error::timeout) ++self->state_->counters.timeouts;
      if (ec || !keep_alive || self->state_->closed) return self->stop();
      self->read();
    });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  std::shared_ptr<HttpServer::State> state_;
};

void accept(const std::shared_ptr<HttpServer::State>& state) {
  state->acceptor.async_accept([state](beast::error_code ec, tcp::socket s) {
    if (state->closed || ec == asio::error::operation_aborted) return;
    if (ec) {
      log::warn("http: accept failed: {}", ec.message());
      state->retry.expires_after(milliseconds(100));
      state->retry.async_wait([state](beast::error_code wec) {
        if (!wec && !state->closed) accept(state);
      });
      return;
    }
    if (state->sessions.size() >= state->limits.max_connections) {
      ++state->counters.refused_connections;
      beast::error_code ignored;
      s.close(ignored);
    } else {
      beast::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(std::move(s), state)->start();
    }
    accept(state);
  });
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, const Endpoint& at, Handler handler, HttpLimits limits)
    : state_(std::make_shared<State>(io)) {
  state_->handler = std::move(handler);
  state_->limits = limits;
  beast::error_code ec;
  auto address = asio::ip::make_address(at.host, ec);
  tcp::endpoint ep(address, at.port);
  auto& a = state_->acceptor;
  if (!ec) a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error(fmt::format("--http {}: cannot listen: {}", at.str(), ec.message()));
  accept(state_);
}

HttpServer::~HttpServer() { close(); }

void HttpServer::close() {
  if (state_->closed) return;
  state_->closed = true;
  state_->handler = nullptr;
  beast::error_code ec;
  state_->acceptor.close(ec);
  state_->retry.cancel();
  auto sessions = state_->sessions;
  for (auto* s : sessions) s->stop();
}

std::size_t HttpServer::connections() const { return state_->sessions.size(); }

const HttpCounters& HttpServer::counters() const { return state_->counters; }

}  // namespace rg::agent
