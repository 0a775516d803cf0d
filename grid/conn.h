#pragma once
// Conn: one framed TCP connection (peer link, probe or admin client).
//
// Reads whatever the socket has (up to 64 KiB a call) and handles every
// complete frame in it, so a burst of small frames costs one syscall, not two
// per frame. Each header is checked (magic, version, cluster, length against
// the cap) before the buffer grows for its body, then the authenticator; a
// bad frame closes the connection and is counted. Writes go
// through one queue with one write in flight: frames queued while a write is
// in flight leave together in the next one (gathered, one syscall). Lives on
// the node's one io_context thread; owned by shared_ptr while I/O is pending.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/frame.h"

namespace rg::grid {

struct ConnCounters {
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t bad_frames = 0;     // failed to authenticate or malformed header
  std::uint64_t unauthenticated = 0;  // of which: bad authenticator or wrong cluster
};

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  using FrameFn = std::function<void(Conn&, std::uint8_t type, std::string_view body)>;
  using CloseFn = std::function<void(Conn&)>;

  Conn(boost::asio::ip::tcp::socket socket, const FrameAuth& auth, ConnCounters& counters,
       std::size_t max_body);

  void start(FrameFn on_frame, CloseFn on_close);
  // Appends a frame to the write queue (built with FrameAuth::begin/seal).
  void send_frame(std::string_view frame);
  // Gives the queue buffer for in-place frame building; call flush() after.
  std::string& out_buffer() { return pending_; }
  void flush();
  void close();

  bool open() const { return open_; }
  std::size_t queued_bytes() const { return pending_.size() + writing_.size(); }
  std::string remote() const;
  // Free slot for whoever owns the connection (peer id, client id...).
  std::string tag;

 private:
  void read_more();
  void consume();
  void write_more();
  void fail();

  boost::asio::ip::tcp::socket socket_;
  const FrameAuth& auth_;
  ConnCounters& counters_;
  std::size_t max_body_;
  FrameFn on_frame_;
  CloseFn on_close_;
  std::string in_;
  std::size_t in_len_ = 0;  // bytes of in_ holding data
  std::string pending_;
  std::string writing_;
  bool open_ = true;
  bool write_in_flight_ = false;
};

}  // namespace rg::grid
