// Health checks and the fencing-token check (agent/health.h): each answer
// from a snapshot of the node, without sockets.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "agent/health.h"

using rg::agent::HealthView;
using rg::agent::health_answer;

namespace {

HealthView master_at(std::uint64_t epoch) {
  HealthView v;
  v.node = "n1";
  v.role = "master";
  v.state = "master";
  v.acting_master = true;
  v.master_epoch = epoch;
  v.lease_remaining_ms = 800;
  v.table_epoch = epoch;
  v.master = "n1";
  v.alive = 3;
  v.quorum = 2;
  v.acceptor_ready = true;
  return v;
}

unsigned status(std::string_view target, const HealthView& v) {
  auto a = health_answer(target, v);
  REQUIRE(a.has_value());
  return a->status;
}

}  // namespace

TEST_CASE("health: /master is 200 only while acting as master, at exactly the asked epoch") {
  auto v = master_at(7);
  CHECK(status("/master", v) == 200);
  CHECK(status("/master?epoch=7", v) == 200);
  CHECK(status("/master?epoch=6", v) == 503);  // an older token is refused
  CHECK(status("/master?epoch=8", v) == 503);
  CHECK(status("/master?x=1&epoch=7", v) == 200);
  CHECK(status("/master?epoch=abc", v) == 400);
  CHECK(status("/master?epoch=0", v) == 400);
  CHECK(status("/master?epoch=", v) == 400);
  CHECK(status("/master?epoch=99999999999999999999999", v) == 400);
  // Past its lease bound the table may still name it: no longer master.
  v.acting_master = false;
  CHECK(status("/master", v) == 503);
  CHECK(status("/master?epoch=7", v) == 503);
  CHECK_FALSE(rg::agent::fenced_at(v, 7));
}

TEST_CASE("health: /replica follows the role, /health needs a voting acceptor and a majority alive") {
  auto v = master_at(3);
  CHECK(status("/replica", v) == 503);
  v.role = "replica";
  v.acting_master = false;
  CHECK(status("/replica", v) == 200);
  CHECK(status("/health", v) == 200);
  v.alive = 1;  // cut off: sees only itself of 3
  CHECK(status("/health", v) == 503);
  v.alive = 2;
  v.acceptor_ready = false;  // recovering, or a disk fault: does not vote
  CHECK(status("/health", v) == 503);
  CHECK_FALSE(health_answer("/metrics", v).has_value());
  CHECK_FALSE(health_answer("/masterx", v).has_value());
}

TEST_CASE("health: every answer carries role and epoch as JSON, 503s included") {
  auto v = master_at(4);
  auto a = health_answer("/master", v);
  REQUIRE(a);
  auto j = nlohmann::json::parse(a->body);
  CHECK(j["role"] == "master");
  CHECK(j["master_epoch"] == 4);
  CHECK(j["lease_remaining_ms"] == 800);
  CHECK(j["quorum"] == true);
  v.role = "data";
  v.acting_master = false;
  v.master = "n2";
  a = health_answer("/master", v);
  REQUIRE(a);
  CHECK(a->status == 503);
  j = nlohmann::json::parse(a->body);
  CHECK(j["role"] == "data");
  CHECK(j["master"] == "n2");
  CHECK(j["epoch"] == 4);
  CHECK_FALSE(j.contains("master_epoch"));
}
