#pragma once
// AdminServer: accepts admin clients and routes each request to the handler
// registered for its command. Handlers answer through a Reply, now or later
// (a put answers when every member applied it), once or as a stream (watch).
// The grid registers its commands; the agent adds its own. One io_context thread.
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/frame.h"
#include "common/ids.h"
#include "grid/admin_protocol.h"
#include "grid/conn.h"

namespace rg::grid {

// Where an answer goes. Copyable; answering a closed connection does nothing.
class Reply {
 public:
  Reply() = default;
  Reply(std::weak_ptr<Conn> conn, std::uint64_t id, const std::function<std::string()>* context)
      : conn_(std::move(conn)), id_(id), context_(context) {}
  void ok(const std::string& json) const { send(AdminStatus::ok, json); }
  void more(const std::string& json) const { send(AdminStatus::more, json); }
  void error(const std::string& reason) const { send(AdminStatus::error, reason); }
  bool alive() const;

 private:
  void send(AdminStatus status, const std::string& body) const;
  std::weak_ptr<Conn> conn_;
  std::uint64_t id_ = 0;
  const std::function<std::string()>* context_ = nullptr;
};

// Admin clients connected at once; more are refused (counted).
inline constexpr std::size_t kMaxAdminClients = 256;

class AdminServer {
 public:
  using Handler = std::function<void(const AdminRequest&, Reply)>;

  // `crypto` holds the admin key (never the peer key): it seals the handshakes.
  AdminServer(boost::asio::io_context& io, const Endpoint& at, DatagramCrypto& crypto,
              ConnCounters& counters);  // throws boost::system::system_error if it cannot bind
  void handle(const std::string& cmd, Handler h) { handlers_[cmd] = std::move(h); }
  // JSON object added to every answer (the agent puts master, replica, epoch in it).
  void set_context(std::function<std::string()> fn) { context_ = std::move(fn); }
  std::vector<std::string> commands() const;
  void close();
  std::size_t clients() const { return conns_.size(); }

 private:
  void accept();
  void on_frame(Conn& c, std::uint8_t type, std::string_view body);

  boost::asio::ip::tcp::acceptor acceptor_;
  DatagramCrypto& crypto_;
  ConnCounters& counters_;
  std::map<std::string, Handler> handlers_;
  std::function<std::string()> context_;
  std::set<std::shared_ptr<Conn>> conns_;
};

}  // namespace rg::grid
