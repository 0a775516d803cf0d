#include "grid/conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace rg::grid {

namespace asio = boost::asio;

bool make_room_for_inbound(const std::set<std::shared_ptr<Conn>>& conns, std::size_t max_total,
                           ConnCounters& counters) {
  std::vector<std::shared_ptr<Conn>> waiting;
  std::size_t open = 0;
  for (const auto& c : conns) {
    if (!c->open()) continue;
    ++open;
    if (!c->established()) waiting.push_back(c);
  }
  if (waiting.size() >= kMaxHandshaking) {
    auto oldest = *std::min_element(waiting.begin(), waiting.end(),
                                    [](const auto& a, const auto& b) { return a->created() < b->created(); });
    oldest->close();
    ++counters.handshakes_evicted;
    --open;
  }
  return open < max_total;
}

void accept_connections(asio::ip::tcp::acceptor& acceptor, std::function<void(asio::ip::tcp::socket)> on_socket) {
  acceptor.async_accept([&acceptor, on_socket = std::move(on_socket)](auto ec, asio::ip::tcp::socket s) mutable {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      on_socket(std::move(s));
      return accept_connections(acceptor, std::move(on_socket));
    }
    auto retry = std::make_shared<asio::steady_timer>(acceptor.get_executor(), std::chrono::milliseconds(50));
    retry->async_wait([&acceptor, retry, on_socket = std::move(on_socket)](auto) mutable {
      if (acceptor.is_open()) accept_connections(acceptor, std::move(on_socket));
    });
  });
}

Conn::Conn(asio::ip::tcp::socket socket, DatagramCrypto& hs, bool initiator, ConnCounters& counters,
           std::size_t max_body)
    : socket_(std::move(socket)),
      crypto_(hs, initiator),
      deadline_(socket_.get_executor()),
      counters_(counters),
      max_body_(max_body),
      created_(std::chrono::steady_clock::now()) {
  boost::system::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void Conn::start(FrameFn on_frame, CloseFn on_close) {
  on_frame_ = std::move(on_frame);
  on_close_ = std::move(on_close);
  deadline_.expires_after(kHandshakeDeadline);
  deadline_.async_wait([self = shared_from_this()](auto ec) {
    if (ec || !self->open_ || self->crypto_.established()) return;
    ++self->counters_.handshake_timeouts;
    self->fail();
  });
  if (crypto_.initiator()) send_hello();
  read_more();
}

std::string Conn::remote() const {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

void Conn::read_more() {
  // Before the handshake only a handshake frame may come: read no more than that.
  std::size_t chunk = crypto_.established() ? 64 * 1024 : kHandshakeFrame - in_len_;
  if (in_.size() < in_len_ + chunk) in_.resize(in_len_ + chunk);
  socket_.async_read_some(asio::buffer(in_.data() + in_len_, chunk),
                          [self = shared_from_this()](auto ec, std::size_t n) {
                            if (ec) {
                              self->fail();
                            } else {
                              self->in_len_ += n;
                              self->consume();
                            }
                            if (self->open_) return self->read_more();
                            self->release();
                          });
}

// Closed, and this is the last read's completion: no call into the frame
// handler is running (consume() is its only caller) and none can follow.
// The handler's captures may own this connection (a probe's state holds its
// connection, whose handler holds the state): kept after the close, the two
// would keep each other, and the read buffer, alive for good.
void Conn::release() {
  on_frame_ = nullptr;
  std::string().swap(in_);
  in_len_ = 0;
}

// The peer's handshake: on success the connection is established, the
// responder answers with its own, and what was queued meanwhile leaves.
bool Conn::on_handshake(std::string_view frame) {
  auto err = crypto_.on_hello(const_cast<char*>(frame.data()), frame.size());
  if (err != FrameError::ok) return false;
  deadline_.cancel();
  if (crypto_.initiator()) flush();
  else send_hello();
  return true;
}

// Our handshake frame goes first, ahead of anything queued (which waits,
// unsealed, until the handshake is done).
void Conn::send_hello() {
  auto hello = crypto_.hello();
  pending_.insert(0, hello);
  sealed_ += hello.size();
  flush();
}

bool Conn::open_frame(char* frame, std::size_t size, FrameHeader& h, std::string_view& body) {
  auto err = crypto_.open(frame, size, max_body_, h, body);
  if (err == FrameError::ok) return true;
  ++counters_.bad_frames;
  if (err == FrameError::out_of_order) ++counters_.replayed;
  else ++counters_.unauthenticated;
  return false;
}

void Conn::consume() {
  std::size_t pos = 0;
  while (open_ && in_len_ - pos >= kHeaderSize) {
    std::string_view rest(in_.data() + pos, in_len_ - pos);
    FrameHeader h;
    std::size_t cap = crypto_.established() ? max_body_ : kHandshakeNonce;
    auto err = read_header(rest, crypto_.hs_cluster(), cap, h);
    if (err != FrameError::ok) {
      ++counters_.bad_frames;
      if (err == FrameError::wrong_cluster) ++counters_.unauthenticated;
      return fail();
    }
    std::size_t total = kHeaderSize + h.body_len + kMacSize;
    if (rest.size() < total) break;
    pos += total;
    if (!crypto_.established()) {
      if (!on_handshake(rest.substr(0, total))) {
        ++counters_.bad_frames;
        ++counters_.unauthenticated;
        return fail();
      }
      continue;
    }
    std::string_view body;
    if (!open_frame(in_.data() + pos - total, total, h, body)) return fail();
    ++counters_.frames_in;
    counters_.bytes_in += total;
    on_frame_(*this, h.type, body);
  }
  if (!open_) return;
  // Keep the partial frame at the front; shrink a buffer a big frame grew.
  if (pos > 0) {
    std::memmove(in_.data(), in_.data() + pos, in_len_ - pos);
    in_len_ -= pos;
  }
  if (in_len_ == 0 && in_.size() > 1024 * 1024) in_.clear();
}

void Conn::send_frame(std::string_view frame) {
  if (!open_) return;
  pending_.append(frame);
  flush();
}

// Seals every queued frame not sealed yet, in order (each takes the next counter).
void Conn::seal_pending() {
  if (!crypto_.established()) return;
  while (sealed_ < pending_.size()) {
    char* f = pending_.data() + sealed_;
    crypto_.seal(f);
    sealed_ += frame_size(f);
  }
}

void Conn::flush() {
  if (!open_ || write_in_flight_) return;
  seal_pending();
  if (sealed_ == 0) return;
  write_more();
}

void Conn::write_more() {
  writing_.clear();
  if (sealed_ == pending_.size()) {
    writing_.swap(pending_);
  } else {
    writing_.assign(pending_, 0, sealed_);
    pending_.erase(0, sealed_);
  }
  sealed_ = 0;
  write_in_flight_ = true;
  ++counters_.frames_out;
  counters_.bytes_out += writing_.size();
  asio::async_write(socket_, asio::buffer(writing_), [self = shared_from_this()](auto ec, std::size_t) {
    self->write_in_flight_ = false;
    if (ec) return self->fail();
    if (self->open_) self->flush();
  });
}

void Conn::close() {
  if (!open_) return;
  open_ = false;
  boost::system::error_code ec;
  deadline_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  pending_.clear();
  sealed_ = 0;
  if (on_close_) {
    auto fn = std::move(on_close_);
    on_close_ = nullptr;
    fn(*this);
  }
}

void Conn::fail() { close(); }

bool Conn::retransmitting() {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return false;
  return info.tcpi_backoff > 0 || info.tcpi_retransmits > 0;
}

}  // namespace rg::grid
