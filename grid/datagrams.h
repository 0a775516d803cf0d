#pragma once
// Receiving datagrams at the cost of one system call per wake-up.
//
// Asio's async_receive_from reads one datagram per call and, on a datagram
// socket, tries a read before it waits every time: with the node's drain
// loop that made two reads answering EAGAIN for every wake-up, half of a
// node's recvfrom calls at 16 clients (docs/benchmarks.md). DatagramReader
// waits for readiness (no read), then takes what is queued with recvmmsg, up
// to kBatch datagrams per call; a call that returns fewer found the queue
// empty, so it goes back to waiting. Part of the node's I/O shell.
//
// What that relies on: one thread runs the io_context (between the read
// that met EAGAIN and the wait queued after it, no other thread can take
// the readiness event: Asio's reactor is edge-triggered); the socket is not
// connected and has no IP_RECVERR, so the kernel sets no error on it that
// could cut a batch short; and the reader is destroyed only once the
// io_context has stopped (a posted continuation holds `this`).
#include <sys/socket.h>

#include <array>
#include <boost/asio/ip/udp.hpp>
#include <cstdint>
#include <functional>
#include <memory>

namespace rg::grid {

// Drops, in the kernel, every datagram `s` would receive from `source`: a
// node's own multicast comes back to it on the loopback (other nodes on the
// host need the loop), and each copy woke the node for a read and a MAC
// check only to be thrown away. False if the kernel refused the filter
// or `source` is not a specific IPv4 address (those datagrams then arrive
// and are dropped by their session). The kernel counts each one dropped
// as a UDP receive error (InErrors, and the socket's drops).
bool drop_datagrams_from(boost::asio::ip::udp::socket& s, const boost::asio::ip::udp::endpoint& source);

class DatagramReader {
 public:
  using Fn = std::function<void(char* bytes, std::size_t size)>;
  static constexpr std::size_t kBatch = 16;
  static constexpr std::size_t kSlot = 65536;  // the largest IPv4 datagram fits

  // `s` must outlive the reader and be non-blocking; `fn` gets each datagram.
  DatagramReader(boost::asio::ip::udp::socket& s, Fn fn);
  // From the loop's next turn: reads what is queued already, then whatever
  // arrives, until the socket closes.
  void start();
  std::uint64_t calls() const { return calls_; }
  std::uint64_t errors() const { return errors_; }

 private:
  void wait();
  void drain();

  boost::asio::ip::udp::socket& s_;
  Fn fn_;
  std::unique_ptr<char[]> buf_;  // kBatch slots of kSlot bytes, not zeroed: pages are touched only as datagrams land
  std::array<mmsghdr, kBatch> msgs_{};
  std::array<iovec, kBatch> iov_{};
  std::uint64_t calls_ = 0;
  std::uint64_t errors_ = 0;
};

}  // namespace rg::grid
