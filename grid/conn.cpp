#include "grid/conn.h"

#include <cstring>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace rg::grid {

namespace asio = boost::asio;

Conn::Conn(asio::ip::tcp::socket socket, const FrameAuth& auth, ConnCounters& counters,
           std::size_t max_body)
    : socket_(std::move(socket)), auth_(auth), counters_(counters), max_body_(max_body) {
  boost::system::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void Conn::start(FrameFn on_frame, CloseFn on_close) {
  on_frame_ = std::move(on_frame);
  on_close_ = std::move(on_close);
  read_more();
}

std::string Conn::remote() const {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

void Conn::read_more() {
  constexpr std::size_t kChunk = 64 * 1024;
  if (in_.size() < in_len_ + kChunk) in_.resize(in_len_ + kChunk);
  socket_.async_read_some(asio::buffer(in_.data() + in_len_, in_.size() - in_len_),
                          [self = shared_from_this()](auto ec, std::size_t n) {
                            if (ec) return self->fail();
                            self->in_len_ += n;
                            self->consume();
                            if (self->open_) self->read_more();
                          });
}

void Conn::consume() {
  std::size_t pos = 0;
  while (open_ && in_len_ - pos >= kHeaderSize) {
    std::string_view rest(in_.data() + pos, in_len_ - pos);
    FrameHeader h;
    auto err = auth_.check_header(rest, max_body_, h);
    if (err != FrameError::ok) {
      ++counters_.bad_frames;
      if (err == FrameError::wrong_cluster) ++counters_.unauthenticated;
      return fail();
    }
    std::size_t total = kHeaderSize + h.body_len + kMacSize;
    if (rest.size() < total) break;
    std::string_view body;
    err = auth_.open(rest.substr(0, total), max_body_, h, body);
    if (err != FrameError::ok) {
      ++counters_.bad_frames;
      ++counters_.unauthenticated;
      return fail();
    }
    ++counters_.frames_in;
    counters_.bytes_in += total;
    pos += total;
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

void Conn::flush() {
  if (!open_ || write_in_flight_ || pending_.empty()) return;
  write_more();
}

void Conn::write_more() {
  writing_.clear();
  writing_.swap(pending_);
  write_in_flight_ = true;
  ++counters_.frames_out;
  counters_.bytes_out += writing_.size();
  asio::async_write(socket_, asio::buffer(writing_), [self = shared_from_this()](auto ec, std::size_t) {
    self->write_in_flight_ = false;
    if (ec) return self->fail();
    if (!self->pending_.empty() && self->open_) self->write_more();
  });
}

void Conn::close() {
  if (!open_) return;
  open_ = false;
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  pending_.clear();
  if (on_close_) {
    auto fn = std::move(on_close_);
    on_close_ = nullptr;
    fn(*this);
  }
}

void Conn::fail() { close(); }

}  // namespace rg::grid
