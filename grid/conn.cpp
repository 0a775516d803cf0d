#include "grid/conn.h"

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
  read_header();
}

std::string Conn::remote() const {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

void Conn::read_header() {
  in_.resize(kHeaderSize);
  asio::async_read(socket_, asio::buffer(in_), [self = shared_from_this()](auto ec, std::size_t) {
    if (ec) return self->fail();
    FrameHeader h;
    auto err = self->auth_.check_header(self->in_, self->max_body_, h);
    if (err != FrameError::ok) {
      ++self->counters_.bad_frames;
      if (err == FrameError::wrong_cluster) ++self->counters_.unauthenticated;
      return self->fail();
    }
    self->read_body(h.body_len);
  });
}

void Conn::read_body(std::size_t len) {
  in_.resize(kHeaderSize + len + kMacSize);
  asio::async_read(socket_, asio::buffer(in_.data() + kHeaderSize, len + kMacSize),
                   [self = shared_from_this()](auto ec, std::size_t) {
                     if (ec) return self->fail();
                     FrameHeader h;
                     std::string_view body;
                     auto err = self->auth_.open(self->in_, self->max_body_, h, body);
                     if (err != FrameError::ok) {
                       ++self->counters_.bad_frames;
                       ++self->counters_.unauthenticated;
                       return self->fail();
                     }
                     ++self->counters_.frames_in;
                     self->counters_.bytes_in += self->in_.size();
                     self->on_frame_(*self, h.type, body);
                     if (self->open_) self->read_header();
                   });
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
