#pragma once
// AdminClient: a blocking client of a node's admin port, for rolegridctl,
// the benchmarks and the tests. One connection; requests may be pipelined
// (send many, then read answers as they come, matched by id).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/frame.h"
#include "grid/admin_protocol.h"

namespace rg::tools {

class AdminClient {
 public:
  // Connects and runs the handshake (common/frame.h) with the admin key of
  // `secret` (decoded, see read_secret_file). Throws std::runtime_error with
  // a one-line reason if it cannot within `timeout`.
  AdminClient(const std::string& node, const std::string& cluster, const std::string& secret,
              std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

  // Sends one request (buffered until flush() or call()).
  std::uint64_t send(const std::string& cmd, const std::vector<std::string>& args);
  void flush();
  // Next answer; nullopt on timeout. Throws on a broken connection.
  std::optional<grid::AdminResponse> read(std::chrono::milliseconds timeout);
  // send + flush + read the matching answer; throws on timeout.
  grid::AdminResponse call(const std::string& cmd, const std::vector<std::string>& args);
  int fd() { return socket_.native_handle(); }

 private:
  void connect(const boost::asio::ip::tcp::endpoint& to, const std::string& node);
  void handshake(const std::string& node);
  // Waits (poll) until the socket is readable or `deadline`; false on timeout.
  bool wait_readable(std::chrono::steady_clock::time_point deadline);
  void read_some();

  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  DatagramCrypto hs_;
  StreamCrypto crypto_;
  std::chrono::milliseconds timeout_;
  std::string out_;
  std::string in_;
  std::uint64_t next_id_ = 1;
};

}  // namespace rg::tools
