#pragma once
// Conn: one framed TCP connection (peer link, probe or admin client).
//
// Starts with the handshake (common/frame.h): the initiator sends its
// nonce, the responder answers with its own, and both derive the
// connection's keys. Until then the only frame accepted is a handshake, at
// most a few bytes, and it must come within kHandshakeDeadline: an
// unauthenticated connection costs little memory and not for long.
//
// Reads whatever the socket has (up to 64 KiB a call) and handles every
// complete frame in it, so a burst of small frames costs one syscall, not two
// per frame. Each header is checked (magic, version, cluster, length against
// the cap) before the buffer grows for its body, then the tag and the
// counter; a bad frame closes the connection and is counted. Frames are
// queued unsealed (built in place, see NodeContext) and sealed when they
// leave: after the handshake, in order, each with the next counter. One
// write in flight: frames queued meanwhile leave together in the next one
// (gathered, one syscall). Lives on the node's one io_context thread; owned
// by shared_ptr while I/O is pending. Once closed it drops its frame handler
// (when the last read completes), so a handler may own its connection.
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>

#include "common/frame.h"

namespace rg::grid {

struct ConnCounters {
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t bad_frames = 0;     // failed to authenticate or malformed header
  std::uint64_t unauthenticated = 0;  // of which: bad authenticator or wrong cluster
  std::uint64_t replayed = 0;         // of which: authentic but not the next counter
  std::uint64_t handshake_timeouts = 0;
  std::uint64_t refused_connections = 0;  // over a port's cap
  std::uint64_t handshakes_evicted = 0;   // closed waiting, to make room for a newer one
  std::uint64_t connects_restarted = 0;   // peer connects unanswered after a probe timeout, started again
  std::uint64_t stalled_links_replaced = 0;  // a restored peer's link still resending: closed, connected anew
};

inline constexpr std::chrono::milliseconds kHandshakeDeadline{2000};
// Inbound connections still in their handshake, per listening port. An
// attacker's connections never finish one: when a new one comes and this
// many wait, the oldest waiting is closed. So descriptors stay bounded, and
// a real client or peer gets in as long as its handshake takes less than
// 128 of the attacker's connection attempts (100 ms at 1,300 a second; a
// refusal instead would shut everyone out for as long as the flood lasts).
inline constexpr std::size_t kMaxHandshaking = 128;

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  using FrameFn = std::function<void(Conn&, std::uint8_t type, std::string_view body)>;
  using CloseFn = std::function<void(Conn&)>;

  // `hs` seals and opens the handshake; `initiator`: we connected.
  Conn(boost::asio::ip::tcp::socket socket, DatagramCrypto& hs, bool initiator, ConnCounters& counters,
       std::size_t max_body);

  void start(FrameFn on_frame, CloseFn on_close);
  // Appends unsealed frames to the write queue (built with frame_begin/end).
  void send_frame(std::string_view frame);
  // Gives the queue buffer for in-place frame building; call flush() after.
  std::string& out_buffer() { return pending_; }
  void flush();
  void close();

  bool open() const { return open_; }
  // The kernel is resending data the peer has not acknowledged, its timer
  // backed off (TCP_INFO); false if it cannot tell.
  bool retransmitting();
  bool established() const { return crypto_.established(); }
  std::chrono::steady_clock::time_point created() const { return created_; }
  std::size_t queued_bytes() const { return pending_.size() + writing_.size(); }
  std::string remote() const;
  // Free slot for whoever owns the connection (peer id, client id...).
  std::string tag;

 private:
  void read_more();
  void consume();
  void write_more();
  void fail();
  void release();
  bool on_handshake(std::string_view frame);
  void send_hello();
  bool open_frame(char* frame, std::size_t size, FrameHeader& h, std::string_view& body);
  void seal_pending();

  boost::asio::ip::tcp::socket socket_;
  StreamCrypto crypto_;
  boost::asio::steady_timer deadline_;
  ConnCounters& counters_;
  std::size_t max_body_;
  FrameFn on_frame_;
  CloseFn on_close_;
  std::string in_;
  std::size_t in_len_ = 0;  // bytes of in_ holding data
  std::string pending_;
  std::size_t sealed_ = 0;  // bytes at the front of pending_ ready to leave
  std::string writing_;
  bool open_ = true;
  std::chrono::steady_clock::time_point created_;
  bool write_in_flight_ = false;
};

// Makes room for one more inbound connection in `conns` (see
// kMaxHandshaking). Returns false if the new one is to be refused:
// `conns` already holds `max_total`.
bool make_room_for_inbound(const std::set<std::shared_ptr<Conn>>& conns, std::size_t max_total,
                           ConnCounters& counters);

// Accepts on `acceptor` until it is closed, handing each socket to
// `on_socket`. After an error (EMFILE: out of descriptors) it waits 50 ms
// instead of retrying at once, which would spin.
void accept_connections(boost::asio::ip::tcp::acceptor& acceptor,
                        std::function<void(boost::asio::ip::tcp::socket)> on_socket);

}  // namespace rg::grid
