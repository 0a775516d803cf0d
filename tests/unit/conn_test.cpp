// Conn over a real loopback TCP pair: frames cross after the handshake, and
// a closed connection is freed even when its own frame handler owns it (as a
// probe's state does), whether it was closed from inside that handler or
// from outside; and a relayed probe that gets no answer has its connection
// ended after the probe's deadline.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "frame_helpers.h"
#include "grid/conn.h"
#include "grid/peer_links.h"

using namespace rg;
using namespace rg::grid;
using namespace rg::test;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// Two ends of one loopback connection, each a started Conn. The client's
// handler holds `owner`, a strong reference to the client itself: the
// cycle a probe's state makes.
struct Pair {
  asio::io_context io;
  DatagramCrypto client_hs = crypto("c", {secret('s')});
  DatagramCrypto server_hs = crypto("c", {secret('s')});
  ConnCounters counters;
  std::shared_ptr<Conn> client, server;
  std::weak_ptr<Conn> client_seen;
  std::string server_got;
  bool close_in_handler = false;
  bool client_handled = false;

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
      c.send_frame(unsealed(101, "answer"));
    }, [](Conn&) {});
    auto owner = client;
    client->start([this, owner](Conn& c, std::uint8_t, std::string_view) {
      client_handled = true;
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
  p.client->send_frame(unsealed(100, "question"));
  p.client.reset();  // only the handler (and pending I/O) hold it now
  for (int i = 0; i < 500 && !p.client_seen.expired(); ++i) p.run_for(10);
  CHECK(p.server_got == "question");
  CHECK(p.client_handled);
  CHECK(p.client_seen.expired());
}

TEST_CASE("conn: closed from outside, a connection its handler owns is freed") {
  Pair p;
  p.client->send_frame(unsealed(100, "question"));
  for (int i = 0; i < 500 && p.server_got.empty(); ++i) p.run_for(10);
  REQUIRE(p.server_got == "question");
  p.client->close();
  p.client.reset();
  for (int i = 0; i < 500 && !p.client_seen.expired(); ++i) p.run_for(10);
  CHECK(p.client_seen.expired());
  // The far end saw the close and is done too.
  for (int i = 0; i < 500 && p.server->open(); ++i) p.run_for(10);
  CHECK_FALSE(p.server->open());
}

// A relayed probe whose result never comes (lost, or a relay host gone
// without a reset) must not keep its connection: past membership's deadline
// the prober ends it, so the relay sees the close.
TEST_CASE("peer links: a relay that never answers has its connection closed after the probe's deadline") {
  asio::io_context io;
  NodeConfig config;
  config.node = "n1";
  config.probe_timeout = std::chrono::milliseconds(50);
  DatagramCrypto hs = crypto("c", {secret('s')});
  NodeCounters counters;
  std::optional<FaultRules> faults;
  NodeContext ctx{io, config, hs, Sender{"n1", 1}, counters, faults};
  ConnCounters conn_counters;
  PeerLinks links(ctx, conn_counters, [](Conn&, std::uint8_t, std::string_view) {});

  // The relay: completes the handshake, takes the request, never answers.
  tcp::acceptor relay(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket accepted(io);
  DatagramCrypto relay_hs = crypto("c", {secret('s')});
  std::shared_ptr<Conn> relay_end;
  bool asked = false, closed_by_prober = false;
  relay.async_accept(accepted, [&](auto ec) {
    if (ec) return;
    relay_end = std::make_shared<Conn>(std::move(accepted), relay_hs, false, conn_counters, 4096);
    relay_end->start([&](Conn&, std::uint8_t, std::string_view) { asked = true; },
                     [&](Conn&) { closed_by_prober = true; });
  });
  bool answered = false;
  auto at = relay.local_endpoint();
  links.probe(ProbeOrder{7, "n3", "127.0.0.1:1", "n2", at.address().to_string() + ":" + std::to_string(at.port())},
              [&](bool) { answered = true; });
  // Well short of the 2 s handshake deadline, which would close it anyway.
  for (int i = 0; i < 100 && !closed_by_prober; ++i) {
    io.run_for(std::chrono::milliseconds(10));
    io.restart();
  }
  CHECK(asked);
  CHECK(closed_by_prober);
  CHECK_FALSE(answered);  // membership's deadline judged it; no late verdict
}
