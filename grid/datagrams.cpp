#include "grid/datagrams.h"

#include <linux/filter.h>

#include <boost/asio/post.hpp>
#include <cerrno>

namespace rg::grid {

namespace asio = boost::asio;

bool drop_datagrams_from(asio::ip::udp::socket& s, const asio::ip::udp::endpoint& source) {
  // A node listening on 0.0.0.0 sends from whatever address the route picks.
  if (!source.address().is_v4() || source.address().is_unspecified()) return false;
  // Classic BPF on a UDP socket: offset 0 is the UDP header, SKF_NET_OFF
  // the IP header; loads are converted to host order.
  const auto ip = source.address().to_v4().to_uint();
  const auto port = source.port();
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<std::uint32_t>(SKF_NET_OFF) + 12),  // source address
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ip, 0, 3),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 0),  // source port
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0),            // from `source`: drop
      BPF_STMT(BPF_RET | BPF_K, 0xFFFFFFFFu),  // anything else: keep whole
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  return ::setsockopt(s.native_handle(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0;
}

DatagramReader::DatagramReader(asio::ip::udp::socket& s, Fn fn) : s_(s), fn_(std::move(fn)), buf_(new char[kBatch * kSlot]) {
  for (std::size_t i = 0; i < kBatch; ++i) {
    iov_[i] = iovec{buf_.get() + i * kSlot, kSlot};
    msgs_[i].msg_hdr.msg_iov = &iov_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
  }
}

void DatagramReader::start() {
  // Not at once: the node's other parts register their handlers after its
  // start(); datagrams queued already wait for the loop like any others.
  asio::post(s_.get_executor(), [this] { drain(); });
}

void DatagramReader::wait() {
  s_.async_wait(asio::ip::udp::socket::wait_read, [this](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted || !s_.is_open()) return;
    drain();
  });
}

void DatagramReader::drain() {
  // Bounded: a flood of datagrams must not starve the loop's other work.
  for (int round = 0; round < 8; ++round) {
    if (!s_.is_open()) return;
    ++calls_;
    int n = ::recvmmsg(s_.native_handle(), msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      // EAGAIN, or an error (reported once, and with a readiness event of
      // its own): wait, never spin on it.
      if (errno != EAGAIN && errno != EWOULDBLOCK) ++errors_;
      return wait();
    }
    for (int i = 0; i < n && s_.is_open(); ++i) fn_(buf_.get() + i * kSlot, msgs_[i].msg_len);
    // Fewer than asked: the call met an empty queue (EAGAIN), and anything
    // newer will signal readiness again.
    if (static_cast<std::size_t>(n) < kBatch) return wait();
  }
  asio::post(s_.get_executor(), [this] { drain(); });
}

}  // namespace rg::grid
