#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <string>
#include <thread>
#include <vector>

#include "grid/datagrams.h"

using namespace rg::grid;
namespace asio = boost::asio;
using udp = asio::ip::udp;

namespace {
udp::socket bound(asio::io_context& io, const char* host = "127.0.0.1", unsigned short port = 0) {
  udp::socket s(io, udp::endpoint(asio::ip::make_address(host), port));
  s.non_blocking(true);
  return s;
}
// Runs the loop until `got` holds `want` datagrams or 2 s passed.
void run_until(asio::io_context& io, const std::vector<std::string>& got, std::size_t want) {
  for (int i = 0; i < 200 && got.size() < want; ++i) io.run_for(std::chrono::milliseconds(10));
}
// Loopback delivery may finish in a softirq after send_to returned.
void settle() { std::this_thread::sleep_for(std::chrono::milliseconds(50)); }
}  // namespace

TEST_CASE("datagram reader: batches of recvmmsg, no read that only finds the queue empty") {
  asio::io_context io;
  auto r = bound(io), b = bound(io);
  std::vector<std::string> got;
  DatagramReader reader(r, [&](char* p, std::size_t n) { got.emplace_back(p, n); });
  // 40 queued before the reader starts, 3 more once it waits.
  for (int i = 0; i < 40; ++i) b.send_to(asio::buffer(std::to_string(i)), r.local_endpoint());
  settle();
  reader.start();
  CHECK(got.empty());  // from the loop, not inside start()
  run_until(io, got, 40);
  CHECK(got.size() == 40);
  // 16 + 16 + 8, the third meeting the empty queue; one more if the
  // readiness of the queued datagrams is still reported once it waits.
  CHECK(reader.calls() >= 3);
  CHECK(reader.calls() <= 4);
  io.run_for(std::chrono::milliseconds(20));
  auto before = reader.calls();
  for (int i = 40; i < 43; ++i) b.send_to(asio::buffer(std::to_string(i)), r.local_endpoint());
  settle();
  run_until(io, got, 43);
  REQUIRE(got.size() == 43);
  for (int i = 0; i < 43; ++i) CHECK(got[i] == std::to_string(i));
  CHECK(reader.calls() - before == 1);  // one wake-up, one call for all three
  CHECK(reader.errors() == 0);
}

TEST_CASE("datagram reader: a long queue is read in bounded turns, in order, and to the end") {
  asio::io_context io;
  auto r = bound(io), b = bound(io);
  r.set_option(asio::socket_base::receive_buffer_size(4 << 20));
  std::vector<std::string> got;
  DatagramReader reader(r, [&](char* p, std::size_t n) { got.emplace_back(p, n); });
  for (int i = 0; i < 200; ++i) b.send_to(asio::buffer(std::to_string(i)), r.local_endpoint());
  settle();
  reader.start();
  // Another handler queued meanwhile runs between the turns (8 batches each).
  bool other_ran_midway = false;
  asio::post(io, [&] { other_ran_midway = !got.empty() && got.size() < 200; });
  run_until(io, got, 200);
  REQUIRE(got.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(got[i] == std::to_string(i));
  CHECK(reader.calls() >= 13);  // 12 full batches and one of 8 (and maybe one for stale readiness)
  CHECK(reader.calls() <= 14);
  CHECK(other_ran_midway);
}

TEST_CASE("datagram reader: a node's own datagrams are dropped in the kernel, others kept") {
  asio::io_context io;
  auto r = bound(io), self = bound(io), other = bound(io);
  // The same port on another address is someone else.
  auto same_port = bound(io, "127.0.0.2", self.local_endpoint().port());
  REQUIRE(drop_datagrams_from(r, self.local_endpoint()));
  CHECK_FALSE(drop_datagrams_from(r, udp::endpoint(asio::ip::address_v4::any(), 7400)));
  std::vector<std::string> got;
  DatagramReader reader(r, [&](char* p, std::size_t n) { got.emplace_back(p, n); });
  reader.start();
  self.send_to(asio::buffer(std::string("mine")), r.local_endpoint());
  other.send_to(asio::buffer(std::string("theirs")), r.local_endpoint());
  self.send_to(asio::buffer(std::string("mine again")), r.local_endpoint());
  same_port.send_to(asio::buffer(std::string("same port, other host")), r.local_endpoint());
  run_until(io, got, 2);
  io.run_for(std::chrono::milliseconds(20));  // time for a wrongly kept one to show
  REQUIRE(got.size() == 2);
  CHECK(got[0] == "theirs");
  CHECK(got[1] == "same port, other host");
}
