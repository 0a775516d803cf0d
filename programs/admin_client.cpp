#include "programs/admin_client.h"

#include <cerrno>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>

#include "common/codec.h"
#include "common/ids.h"
#include "common/keys.h"
#include "grid/messages.h"

namespace rg::tools {

namespace asio = boost::asio;

AdminClient::AdminClient(const std::string& node, const std::string& cluster, const std::string& secret,
                         std::chrono::milliseconds timeout)
    : socket_(io_),
      hs_(cluster_id_of(cluster), derive_ring(cluster, {secret}, KeyUse::admin)),
      crypto_(hs_, true),
      timeout_(timeout) {
  std::string why;
  auto ep = parse_endpoint(node, &why);
  if (!ep) throw std::runtime_error(fmt::format("--node: {}", why));
  connect(asio::ip::tcp::endpoint(asio::ip::make_address(ep->host), ep->port), node);
  socket_.set_option(asio::ip::tcp::no_delay(true));
  handshake(node);
}

// Our nonce out, the node's back: from then on both sides hold keys no
// earlier connection had, so nothing recorded can be replayed into this one.
void AdminClient::handshake(const std::string& node) {
  out_ = crypto_.hello();
  flush();
  auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (in_.size() < kHandshakeFrame) {
    if (!wait_readable(deadline)) throw std::runtime_error(fmt::format("no handshake from {} within {} ms", node, timeout_.count()));
    read_some();
  }
  auto err = crypto_.on_hello(in_.data(), kHandshakeFrame);
  if (err != FrameError::ok)
    throw std::runtime_error(fmt::format("bad handshake from the node ({}): wrong --cluster or secret?", to_string(err)));
  in_.erase(0, kHandshakeFrame);
}

bool AdminClient::wait_readable(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{socket_.native_handle(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    if (n > 0) return true;
    if (left.count() <= 0) return false;
  }
}

void AdminClient::read_some() {
  char buf[65536];
  boost::system::error_code ec;
  std::size_t got = socket_.read_some(asio::buffer(buf), ec);
  if (ec) {
    if (ec == asio::error::eof)
      throw std::runtime_error("the node closed the connection (wrong --cluster or secret file?)");
    throw std::runtime_error(fmt::format("lost the connection to the node: {}", ec.message()));
  }
  in_.append(buf, got);
}

void AdminClient::connect(const asio::ip::tcp::endpoint& to, const std::string& node) {
  // A blocking connect to a host that drops SYNs waits minutes; a node that
  // does not answer within the timeout counts as unreachable instead.
  boost::system::error_code ec;
  socket_.open(to.protocol(), ec);
  if (!ec) socket_.non_blocking(true, ec);
  if (!ec) socket_.connect(to, ec);
  if (ec == asio::error::in_progress || ec == asio::error::would_block) {
    pollfd p{socket_.native_handle(), POLLOUT, 0};
    int n = ::poll(&p, 1, static_cast<int>(timeout_.count()));
    if (n == 0) throw std::runtime_error(fmt::format("cannot connect to {}: no answer within {} ms", node, timeout_.count()));
    int err = 0;
    socklen_t len = sizeof err;
    if (n < 0) err = errno;
    else ::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len);
    ec = boost::system::error_code(err, boost::system::system_category());
  }
  if (!ec) socket_.non_blocking(false, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot connect to {}: {}", node, ec.message()));
}

std::uint64_t AdminClient::send(const std::string& cmd, const std::vector<std::string>& args) {
  grid::AdminRequest req{next_id_++, cmd, args};
  auto start = frame_begin(out_);
  encode_into(out_, req);
  frame_end(out_, start, static_cast<std::uint8_t>(grid::MsgType::admin_request));
  crypto_.seal(out_.data() + start);
  return req.id;
}

void AdminClient::flush() {
  if (out_.empty()) return;
  boost::system::error_code ec;
  asio::write(socket_, asio::buffer(out_), ec);
  out_.clear();
  if (ec) throw std::runtime_error(fmt::format("lost the connection to the node: {}", ec.message()));
}

std::optional<grid::AdminResponse> AdminClient::read(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (in_.size() >= kHeaderSize) {
      FrameHeader h;
      auto err = read_header(in_, hs_.cluster_id(), kMaxStreamBody, h);
      if (err != FrameError::ok)
        throw std::runtime_error(fmt::format("bad answer from the node ({}): wrong --cluster or secret?", to_string(err)));
      std::size_t total = kHeaderSize + h.body_len + kMacSize;
      if (in_.size() >= total) {
        std::string_view body;
        err = crypto_.open(in_.data(), total, kMaxStreamBody, h, body);
        if (err != FrameError::ok) throw std::runtime_error(fmt::format("bad answer from the node ({})", to_string(err)));
        grid::AdminResponse r;
        if (!decode(body, r)) throw std::runtime_error("undecodable answer from the node");
        in_.erase(0, total);
        return r;
      }
    }
    if (!wait_readable(deadline)) return std::nullopt;
    read_some();
  }
}

grid::AdminResponse AdminClient::call(const std::string& cmd, const std::vector<std::string>& args) {
  auto id = send(cmd, args);
  flush();
  for (;;) {
    auto r = read(timeout_);
    if (!r) throw std::runtime_error(fmt::format("no answer to '{}' within {} ms", cmd, timeout_.count()));
    if (r->id == id) return *r;
  }
}

}  // namespace rg::tools
