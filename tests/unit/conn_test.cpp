// Conn over a real loopback TCP pair: frames cross after the handshake, and
// a closed connection is freed even when its own frame handler owns it (as a
// probe's state does), whether it was closed from inside that handler or
// from outside.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "common/frame.h"
#include "common/keys.h"
#include "grid/conn.h"

using namespace rg;
using namespace rg::grid;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

std::string frame_of(std::uint8_t type, std::string_view body) {
  std::string out;
  auto start = frame_begin(out);
  out.append(body);
  frame_end(out, start, type);
  return out;
}

// Two ends of one loopback connection, each a started Conn. The client's
// handler holds `owner`, a strong reference to the client itself: the
// cycle a probe's state makes.
struct Pair {
  asio::io_context io;
  DatagramCrypto client_hs{cluster_id_of("c"), derive_ring("c", {std::string(32, 's')}, KeyUse::peer)};
  DatagramCrypto server_hs{cluster_id_of("c"), derive_ring("c", {std::string(32, 's')}, KeyUse::peer)};
  ConnCounters counters;
  std::shared_ptr<Conn> client, server;
  std::weak_ptr<Conn> client_seen;
  std::string server_got;
  bool close_in_handler = false;

  Pair() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket a(io), b(io);
    a.connect(acceptor.local_endpoint());
    acceptor.accept(b);
    client = std::make_shared<Conn>(std::move(a), client_hs, true, counters, 4096);
    server = std::make_shared<Conn>(std::move(b), server_hs, false, counters, 4096);
    client_seen = client;
    server->start([this](Conn& c, std::uint8_t, std::string_view body) {
      server_got = std::string(body);
      c.send_frame(frame_of(101, "answer"));
    }, [](Conn&) {});
    auto owner = client;
    client->start([this, owner](Conn& c, std::uint8_t, std::string_view) {
      if (close_in_handler) c.close();
    }, [](Conn&) {});
  }
  void run_for(int ms) {
    io.run_for(std::chrono::milliseconds(ms));
    io.restart();
  }
};

}  // namespace

TEST_CASE("conn: closed inside its own handler, a connection its handler owns is freed") {
  Pair p;
  p.close_in_handler = true;
  p.client->send_frame(frame_of(100, "question"));
  p.client.reset();  // only the handler (and pending I/O) hold it now
  for (int i = 0; i < 100 && !p.client_seen.expired(); ++i) p.run_for(10);
  CHECK(p.server_got == "question");
  CHECK(p.client_seen.expired());
}

TEST_CASE("conn: closed from outside, a connection its handler owns is freed") {
  Pair p;
  p.client->send_frame(frame_of(100, "question"));
  for (int i = 0; i < 100 && p.server_got.empty(); ++i) p.run_for(10);
  REQUIRE(p.server_got == "question");
  p.client->close();
  p.client.reset();
  for (int i = 0; i < 100 && !p.client_seen.expired(); ++i) p.run_for(10);
  CHECK(p.client_seen.expired());
  // The far end saw the close and is done too.
  for (int i = 0; i < 100 && p.server->open(); ++i) p.run_for(10);
  CHECK_FALSE(p.server->open());
}
