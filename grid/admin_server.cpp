#include "grid/admin_server.h"

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include "common/log.h"
#include "grid/messages.h"

namespace rg::grid {

namespace asio = boost::asio;

bool Reply::alive() const {
  auto c = conn_.lock();
  return c && c->open();
}

void Reply::send(AdminStatus status, const std::string& body) const {
  auto c = conn_.lock();
  if (!c || !c->open()) return;
  AdminResponse r{id_, status, body, (context_ && *context_) ? (*context_)() : std::string()};
  auto& out = c->out_buffer();
  auto start = frame_begin(out);
  encode_into(out, r);
  frame_end(out, start, static_cast<std::uint8_t>(MsgType::admin_response));
  c->flush();
}

AdminServer::AdminServer(asio::io_context& io, const Endpoint& at, DatagramCrypto& crypto,
                         ConnCounters& counters)
    : acceptor_(io), crypto_(crypto), counters_(counters) {
  asio::ip::tcp::endpoint ep(asio::ip::make_address(at.host), at.port);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
  accept();
}

std::vector<std::string> AdminServer::commands() const {
  std::vector<std::string> out;
  for (const auto& [name, h] : handlers_) out.push_back(name);
  return out;
}

void AdminServer::close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  auto conns = conns_;
  for (const auto& c : conns) c->close();
}

void AdminServer::accept() {
  accept_connections(acceptor_, [this](asio::ip::tcp::socket s) {
    if (!make_room_for_inbound(conns_, kMaxAdminClients, counters_)) {
      ++counters_.refused_connections;
      return;  // the socket closes as it goes out of scope
    }
    auto c = std::make_shared<Conn>(std::move(s), crypto_, false, counters_, 1024 * 1024);
    conns_.insert(c);
    c->start([this](Conn& conn, std::uint8_t type, std::string_view body) { on_frame(conn, type, body); },
             [this](Conn& conn) { conns_.erase(conn.shared_from_this()); });
  });
}

void AdminServer::on_frame(Conn& c, std::uint8_t type, std::string_view body) {
  AdminRequest req;
  if (type != static_cast<std::uint8_t>(MsgType::admin_request) || !decode(body, req)) {
    ++counters_.bad_frames;
    c.close();
    return;
  }
  Reply reply(c.weak_from_this(), req.id, &context_);
  auto it = handlers_.find(req.cmd);
  if (it == handlers_.end()) {
    reply.error(fmt::format("unknown command '{}'", req.cmd));
    return;
  }
  try {
    it->second(req, reply);
  } catch (const std::exception& e) {
    reply.error(e.what());
  }
}

}  // namespace rg::grid
