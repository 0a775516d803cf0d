#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <string>
#include <vector>

#include "grid/datagrams.h"

using namespace rg::grid;
namespace asio = boost::asio;
using udp = asio::ip::udp;

namespace {
udp::socket bound(asio::io_context& io) {
  udp::socket s(io, udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  s.non_blocking(true);
  return s;
}
// Runs the loop until `got` holds `want` datagrams or 2 s passed.
void run_until(asio::io_context& io, const std::vector<std::string>& got, std::size_t want) {
  for (int i = 0; i < 200 && got.size() < want; ++i) io.run_for(std::chrono::milliseconds(10));
}
}  // namespace

TEST_CASE("datagram reader: batches of recvmmsg, no read that only finds the queue empty") {
  asio::io_context io;
  auto r = bound(io), b = bound(io);
  std::vector<std::string> got;
  DatagramReader reader(r, [&](char* p, std::size_t n) { got.emplace_back(p, n); });
  // 40 queued before the reader starts, 3 more once it waits.
  for (int i = 0; i < 40; ++i) b.send_to(asio::buffer(std::to_string(i)), r.local_endpoint());
  reader.start();
  CHECK(got.size() == 40);
  CHECK(reader.calls() == 3);  // 16 + 16 + 8: the third met the empty queue
  for (int i = 40; i < 43; ++i) b.send_to(asio::buffer(std::to_string(i)), r.local_endpoint());
  run_until(io, got, 43);
  REQUIRE(got.size() == 43);
  for (int i = 0; i < 43; ++i) CHECK(got[i] == std::to_string(i));
  CHECK(reader.calls() <= 6);
  CHECK(reader.errors() == 0);
}

TEST_CASE("datagram reader: a node's own datagrams are dropped in the kernel, others kept") {
  asio::io_context io;
  auto r = bound(io), self = bound(io), other = bound(io);
  REQUIRE(drop_datagrams_from(r, self.local_endpoint()));
  std::vector<std::string> got;
  DatagramReader reader(r, [&](char* p, std::size_t n) { got.emplace_back(p, n); });
  reader.start();
  self.send_to(asio::buffer(std::string("mine")), r.local_endpoint());
  other.send_to(asio::buffer(std::string("theirs")), r.local_endpoint());
  self.send_to(asio::buffer(std::string("mine again")), r.local_endpoint());
  other.send_to(asio::buffer(std::string("theirs again")), r.local_endpoint());
  run_until(io, got, 2);
  io.run_for(std::chrono::milliseconds(20));  // time for a wrongly kept one to show
  REQUIRE(got.size() == 2);
  CHECK(got[0] == "theirs");
  CHECK(got[1] == "theirs again");
}
