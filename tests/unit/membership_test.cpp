// Unit tests for grid::Membership, the failure-detection core. Time is driven
// by hand in milliseconds from an arbitrary start; defaults apply:
// heartbeat 100 ms, failure_timeout 1000 ms, probe_timeout 250 ms, stall 500 ms.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "grid/membership.h"

using namespace rg;
using namespace rg::grid;

namespace {

const Time kStart = Time{} + std::chrono::hours(1);
Time at(int ms) { return kStart + milliseconds(ms); }

std::string addr(const NodeId& id) { return "127.0.0.1:740" + id.substr(1); }

// Events as "kind id incarnation", so a whole output compares in one check.
std::vector<std::string> events(const MembershipOutput& out) {
  std::vector<std::string> lines;
  for (const auto& e : out.events)
    lines.push_back(std::string(to_string(e.kind)) + " " + e.id + " " + std::to_string(e.incarnation));
  return lines;
}

using Lines = std::vector<std::string>;

// Node n1 (incarnation 7) in a cluster of n1..n4, or of the given members.
struct Node {
  explicit Node(std::vector<NodeId> members = {"n1", "n2", "n3", "n4"})
      : core(Topology(std::move(members)), "n1", 7, "127.0.0.1:7401", MembershipConfig{}, at(0)) {}

  Heard hear(const NodeId& id, Incarnation inc, int ms) { return hear_from(id, inc, addr(id), ms); }
  Heard hear_from(const NodeId& id, Incarnation inc, const std::string& address, int ms) {
    return core.on_heard(id, inc, address, core.topology().fingerprint(), at(ms), out);
  }
  // Ticks every 100 ms up to `ms`, as the shell does, so no stall is seen.
  void tick_to(int ms) {
    for (; last_tick + 100 <= ms; last_tick += 100) core.tick(at(last_tick + 100), out);
    if (last_tick < ms) core.tick(at(last_tick = ms), out);
  }
  MemberState state(const NodeId& id) const { return core.find(id)->state; }

  // n2, n3, n4 (incarnation 5) heard at 0; n3 and n4 again at 500 and 600,
  // so at 1100 only n2 has been silent longer than failure_timeout.
  void suspect_n2() {
    for (const char* id : {"n2", "n3", "n4"}) hear(id, 5, 0);
    tick_to(500);
    hear("n3", 5, 500);
    tick_to(600);
    hear("n4", 5, 600);
    tick_to(1000);
    REQUIRE(out.events.size() == 3);  // the three joins
    out.clear();
    tick_to(1100);
    REQUIRE(events(out) == Lines{"suspected n2 5"});
    REQUIRE(out.probes.size() == 2);
    direct = out.probes[0].nonce;
    indirect = out.probes[1].nonce;
    out.clear();
  }

  Membership core;
  MembershipOutput out;
  int last_tick = 0;
  std::uint64_t direct = 0, indirect = 0;
};

}  // namespace

TEST_CASE("membership: members are the topology minus self, all unknown at first") {
  Node n;
  CHECK(n.core.members().size() == 3);
  CHECK(n.core.find("n1") == nullptr);
  for (const char* id : {"n2", "n3", "n4"}) CHECK(n.state(id) == MemberState::unknown);
  CHECK(n.core.alive().empty());
  CHECK_FALSE(n.core.tilted());
  CHECK_THROWS_AS(Membership(Topology({"n2", "n3"}), "n1", 1, "a:1", {}, at(0)),
                  std::invalid_argument);
}

TEST_CASE("membership: the first message from a member joins it") {
  Node n;
  CHECK(n.hear("n2", 5, 10) == Heard::accepted);
  CHECK(events(n.out) == Lines{"joined n2 5"});
  CHECK(n.out.events[0].address == "127.0.0.1:7402");
  const MemberInfo& m = *n.core.find("n2");
  CHECK(m.state == MemberState::alive);
  CHECK(m.incarnation == 5);
  CHECK(m.address == "127.0.0.1:7402");
  CHECK(m.last_heard == at(10));
  CHECK(m.alive_since == at(10));
  CHECK(m.state_since == at(10));
  n.out.clear();

  CHECK(n.hear("n2", 5, 20) == Heard::accepted);
  CHECK(n.out.events.empty());
  CHECK(m.last_heard == at(20));
  CHECK(m.alive_since == at(10));
  CHECK(n.core.alive() == std::vector<NodeId>{"n2"});
  CHECK(n.core.is_alive("n2"));
  CHECK_FALSE(n.core.is_alive("n3"));
  CHECK_FALSE(n.core.is_alive("n1"));
}

TEST_CASE("membership: our own loopback is ignored, another process with our id is refused") {
  Node n;
  CHECK(n.hear_from("n1", 7, "127.0.0.1:7401", 0) == Heard::self);
  CHECK(n.out.refusals.empty());

  CHECK(n.hear_from("n1", 8, "10.0.0.9:7401", 0) == Heard::self_duplicate);
  REQUIRE(n.out.refusals.size() == 1);
  CHECK(n.out.refusals[0].address == "10.0.0.9:7401");
  CHECK(n.out.refusals[0].reason ==
        "node id n1 is already live here at 127.0.0.1:7401 (incarnation 7); refusing a second "
        "process at 10.0.0.9:7401 (incarnation 8)");
  CHECK(n.out.events.empty());
}

TEST_CASE("membership: strangers and nodes with another member list are refused") {
  Node n;
  auto fp = n.core.topology().fingerprint();
  // Membership is checked before the fingerprint: a stranger's list differs too.
  CHECK(n.core.on_heard("n9", 1, "10.0.0.9:7409", fp + 1, at(0), n.out) == Heard::not_a_member);
  REQUIRE(n.out.refusals.size() == 1);
  CHECK(n.out.refusals[0].address == "10.0.0.9:7409");
  CHECK(n.out.refusals[0].reason == "node id n9 is not in this cluster's members [n1,n2,n3,n4]");
  CHECK(n.core.find("n9") == nullptr);
  n.out.clear();

  CHECK(n.core.on_heard("n2", 1, addr("n2"), fp + 1, at(0), n.out) == Heard::wrong_topology);
  REQUIRE(n.out.refusals.size() == 1);
  CHECK(n.out.refusals[0].address == "127.0.0.1:7402");
  CHECK(n.out.refusals[0].reason ==
        "node id n2: its member list differs from this cluster's [n1,n2,n3,n4]");
  CHECK(n.state("n2") == MemberState::unknown);
  CHECK(n.out.events.empty());
}

TEST_CASE("membership: a higher incarnation is a restart and joins again") {
  Node n;
  SUBCASE("while alive") {
    n.hear("n2", 5, 0);
    n.out.clear();
    CHECK(n.hear("n2", 6, 300) == Heard::accepted);
    CHECK(events(n.out) == Lines{"joined n2 6"});
    CHECK(n.core.find("n2")->alive_since == at(300));
  }
  SUBCASE("while suspected: the old process's probes no longer count") {
    n.suspect_n2();
    CHECK(n.hear("n2", 6, 1150) == Heard::accepted);
    CHECK(events(n.out) == Lines{"joined n2 6"});
    n.out.clear();
    n.core.on_probe_result(n.direct, false, at(1160), n.out);
    n.core.on_probe_result(n.indirect, false, at(1170), n.out);
    n.tick_to(1500);
    CHECK(n.out.events.empty());
  }
  CHECK(n.state("n2") == MemberState::alive);
  CHECK(n.core.find("n2")->incarnation == 6);
}

TEST_CASE("membership: an older incarnation is stale") {
  Node n;
  n.hear("n2", 6, 0);
  n.out.clear();
  CHECK(n.hear("n2", 5, 100) == Heard::stale);
  CHECK(n.out.events.empty());
  CHECK(n.out.refusals.empty());
  CHECK(n.core.find("n2")->incarnation == 6);
  CHECK(n.core.find("n2")->last_heard == at(0));
}

TEST_CASE("membership: a second live process with a member's id is refused") {
  Node n;
  n.hear("n2", 5, 0);
  n.out.clear();
  Incarnation claimed = 0;
  SUBCASE("newer incarnation") { claimed = 6; }
  SUBCASE("same incarnation") { claimed = 5; }
  SUBCASE("older incarnation") { claimed = 4; }
  CAPTURE(claimed);
  CHECK(n.hear_from("n2", claimed, "10.0.0.2:7402", 1000) == Heard::duplicate);
  REQUIRE(n.out.refusals.size() == 1);
  CHECK(n.out.refusals[0].address == "10.0.0.2:7402");
  CHECK(n.out.refusals[0].reason ==
        "node id n2 is already live at 127.0.0.1:7402 (incarnation 5); refusing a second "
        "process at 10.0.0.2:7402 (incarnation " + std::to_string(claimed) + ")");
  CHECK(n.out.events.empty());
  const MemberInfo& m = *n.core.find("n2");
  CHECK(m.incarnation == 5);
  CHECK(m.address == "127.0.0.1:7402");
  CHECK(m.last_heard == at(0));
}

TEST_CASE("membership: a new incarnation at the same address is a restart, not a duplicate") {
  Node n;
  n.hear("n2", 5, 0);
  n.out.clear();
  CHECK(n.hear("n2", 6, 50) == Heard::accepted);
  CHECK(events(n.out) == Lines{"joined n2 6"});
  CHECK(n.out.refusals.empty());
}

TEST_CASE("membership: a member silent, failed or gone may come back from another address") {
  Node n;
  SUBCASE("silent longer than failure_timeout, not yet suspected") {
    n.hear("n2", 5, 0);
    n.tick_to(1000);
    n.out.clear();
    CHECK(n.hear_from("n2", 6, "10.0.0.2:7402", 1001) == Heard::accepted);
  }
  SUBCASE("failed") {
    n.suspect_n2();
    n.tick_to(1400);
    REQUIRE(n.state("n2") == MemberState::failed);
    n.out.clear();
    CHECK(n.hear_from("n2", 6, "10.0.0.2:7402", 1450) == Heard::accepted);
  }
  SUBCASE("left") {
    n.hear("n2", 5, 0);
    n.core.on_leave("n2", 5, at(10), n.out);
    n.out.clear();
    CHECK(n.hear_from("n2", 6, "10.0.0.2:7402", 20) == Heard::accepted);
  }
  CHECK(events(n.out) == Lines{"joined n2 6"});
  CHECK(n.out.events[0].address == "10.0.0.2:7402");
  CHECK(n.out.refusals.empty());
  CHECK(n.core.find("n2")->address == "10.0.0.2:7402");
}

TEST_CASE("membership: silence makes a suspect, probed directly and through the freshest member") {
  Node n;
  for (const char* id : {"n2", "n3", "n4"}) n.hear(id, 5, 0);
  n.tick_to(500);
  n.hear("n3", 5, 500);
  n.tick_to(600);
  n.hear("n4", 5, 600);
  n.out.clear();
  n.tick_to(1000);
  CHECK(n.out.events.empty());  // silent exactly failure_timeout: not yet
  n.tick_to(1100);
  CHECK(events(n.out) == Lines{"suspected n2 5"});
  CHECK(n.state("n2") == MemberState::suspected);
  CHECK(n.core.is_alive("n2"));  // a suspicion is not a verdict
  CHECK(n.core.alive() == std::vector<NodeId>{"n2", "n3", "n4"});
  REQUIRE(n.out.probes.size() == 2);
  const ProbeOrder& direct = n.out.probes[0];
  CHECK(direct.target == "n2");
  CHECK(direct.address == "127.0.0.1:7402");
  CHECK(direct.via.empty());
  CHECK(direct.via_address.empty());
  const ProbeOrder& indirect = n.out.probes[1];
  CHECK(indirect.target == "n2");
  CHECK(indirect.address == "127.0.0.1:7402");
  CHECK(indirect.via == "n4");  // heard at 600, after n3
  CHECK(indirect.via_address == "127.0.0.1:7404");
  CHECK(direct.nonce != indirect.nonce);
  n.out.clear();

  n.tick_to(1200);  // still within the probe deadline: nothing new
  CHECK(n.out.events.empty());
  CHECK(n.out.probes.empty());
}

TEST_CASE("membership: with no other alive member only a direct probe is sent") {
  Node n({"n1", "n2"});
  n.hear("n2", 5, 0);
  n.out.clear();
  n.tick_to(1100);
  CHECK(events(n.out) == Lines{"suspected n2 5"});
  REQUIRE(n.out.probes.size() == 1);
  CHECK(n.out.probes[0].via.empty());
  auto nonce = n.out.probes[0].nonce;
  n.out.clear();
  n.core.on_probe_result(nonce, false, at(1150), n.out);
  CHECK(events(n.out) == Lines{"failed n2 5"});
  CHECK(n.state("n2") == MemberState::failed);
  CHECK_FALSE(n.core.is_alive("n2"));
}

TEST_CASE("membership: a suspect fails only when both probes fail") {
  Node n;
  n.suspect_n2();
  n.core.on_probe_result(n.direct, false, at(1120), n.out);
  CHECK(n.out.events.empty());
  n.core.on_probe_result(n.direct, false, at(1130), n.out);  // the same answer twice counts once
  CHECK(n.out.events.empty());
  n.core.on_probe_result(999, false, at(1135), n.out);  // never ordered
  CHECK(n.out.events.empty());
  CHECK(n.state("n2") == MemberState::suspected);
  n.core.on_probe_result(n.indirect, false, at(1140), n.out);
  CHECK(events(n.out) == Lines{"failed n2 5"});
  CHECK(n.core.alive() == std::vector<NodeId>{"n3", "n4"});
}

TEST_CASE("membership: a suspect fails when the probe deadline passes unanswered") {
  Node n;
  n.suspect_n2();
  n.core.on_probe_result(n.direct, false, at(1120), n.out);
  n.tick_to(1300);
  CHECK(n.out.events.empty());
  n.core.tick(at(1350), n.out);  // deadline = 1100 + probe_timeout
  CHECK(events(n.out) == Lines{"failed n2 5"});
}

TEST_CASE("membership: any probe success or any message restores a suspect") {
  Node n;
  n.suspect_n2();
  SUBCASE("direct probe reached it") {
    n.core.on_probe_result(n.direct, true, at(1200), n.out);
    CHECK(n.core.find("n2")->last_heard == at(1200));
  }
  SUBCASE("indirect probe reached it after the direct one failed") {
    n.core.on_probe_result(n.direct, false, at(1150), n.out);
    n.core.on_probe_result(n.indirect, true, at(1200), n.out);
  }
  SUBCASE("heard from it") { CHECK(n.hear("n2", 5, 1200) == Heard::accepted); }
  CHECK(events(n.out) == Lines{"restored n2 5"});
  CHECK(n.state("n2") == MemberState::alive);
  n.out.clear();
  // Answers to a suspicion that is over change nothing.
  n.core.on_probe_result(n.indirect, false, at(1210), n.out);
  n.core.on_probe_result(n.direct, false, at(1220), n.out);
  n.tick_to(1400);
  CHECK(n.out.events.empty());
  CHECK(n.state("n2") == MemberState::alive);
}

TEST_CASE("membership: a failed member heard again is restored; a left one returns only as a new process") {
  Node n;
  n.suspect_n2();
  n.tick_to(1400);
  REQUIRE(events(n.out) == Lines{"failed n2 5"});
  n.out.clear();
  n.hear("n3", 5, 1400);
  n.hear("n4", 5, 1400);
  n.tick_to(2000);  // a failed member is not suspected again
  CHECK(n.out.events.empty());
  CHECK(n.hear("n2", 5, 2000) == Heard::accepted);
  CHECK(events(n.out) == Lines{"restored n2 5"});
  n.out.clear();

  n.core.on_leave("n2", 5, at(2010), n.out);
  CHECK(events(n.out) == Lines{"left n2 5"});
  n.out.clear();
  // A heartbeat it sent before leaving, delivered late, does not bring it back.
  CHECK(n.hear("n2", 5, 2020) == Heard::stale);
  CHECK(n.out.events.empty());
  CHECK(n.state("n2") == MemberState::left);
  CHECK(n.hear("n2", 6, 2030) == Heard::accepted);
  CHECK(events(n.out) == Lines{"joined n2 6"});
  CHECK(n.core.find("n2")->alive_since == at(2030));
}

TEST_CASE("membership: leaving") {
  Node n;
  SUBCASE("from alive; repeated and older leaves change nothing") {
    n.hear("n2", 5, 0);
    n.out.clear();
    n.core.on_leave("n2", 5, at(10), n.out);
    CHECK(events(n.out) == Lines{"left n2 5"});
    CHECK(n.state("n2") == MemberState::left);
    CHECK_FALSE(n.core.is_alive("n2"));
    n.out.clear();
    n.core.on_leave("n2", 5, at(20), n.out);
    n.core.on_leave("n2", 4, at(30), n.out);
    n.tick_to(3000);  // a member that left is never suspected
    CHECK(n.out.events.empty());
  }
  SUBCASE("an older incarnation's leave is stale") {
    n.hear("n2", 5, 0);
    n.out.clear();
    n.core.on_leave("n2", 4, at(10), n.out);
    CHECK(n.out.events.empty());
    CHECK(n.state("n2") == MemberState::alive);
  }
  SUBCASE("a newer incarnation's leave") {
    n.hear("n2", 5, 0);
    n.out.clear();
    n.core.on_leave("n2", 6, at(10), n.out);
    CHECK(events(n.out) == Lines{"left n2 6"});
  }
  SUBCASE("from a member never heard: nothing joined, so nothing leaves") {
    n.core.on_leave("n3", 1, at(10), n.out);
    CHECK(n.out.events.empty());
    CHECK(n.state("n3") == MemberState::unknown);
  }
  SUBCASE("while suspected: the pending probes no longer count") {
    n.suspect_n2();
    n.core.on_leave("n2", 5, at(1150), n.out);
    CHECK(events(n.out) == Lines{"left n2 5"});
    n.out.clear();
    n.core.on_probe_result(n.direct, false, at(1160), n.out);
    n.core.on_probe_result(n.indirect, false, at(1170), n.out);
    n.tick_to(1400);
    CHECK(n.out.events.empty());
    CHECK(n.state("n2") == MemberState::left);
  }
  SUBCASE("from ourselves or a stranger: ignored") {
    n.core.on_leave("n1", 7, at(10), n.out);
    n.core.on_leave("n9", 1, at(10), n.out);
    CHECK(n.out.events.empty());
  }
}

TEST_CASE("membership: a stalled node enters TILT, drops suspicions and accuses nobody") {
  Node n;
  n.suspect_n2();
  n.core.tick(at(1800), n.out);  // 700 ms since the last tick: we stalled
  CHECK(n.core.tilted());
  CHECK(n.core.tilt_count() == 1);
  CHECK(events(n.out) == Lines{"restored n2 5"});
  for (const char* id : {"n2", "n3", "n4"}) {
    CHECK(n.state(id) == MemberState::alive);
    CHECK(n.core.find(id)->last_heard == at(1800));
  }
  n.out.clear();
  n.last_tick = 1800;
  // Answers to probes ordered before the stall are void.
  n.core.on_probe_result(n.direct, false, at(1810), n.out);
  n.core.on_probe_result(n.indirect, false, at(1820), n.out);
  CHECK(n.out.events.empty());

  SUBCASE("TILT ends once every alive member was heard since it began") {
    n.hear("n2", 5, 1850);
    n.hear("n3", 5, 1860);
    n.tick_to(1900);
    CHECK(n.core.tilted());
    n.hear("n4", 5, 1950);
    n.tick_to(2000);
    CHECK_FALSE(n.core.tilted());
    CHECK(n.out.events.empty());
  }
  SUBCASE("silence since TILT began counts in full only after failure_timeout") {
    n.hear("n3", 5, 1900);
    n.tick_to(2800);
    CHECK(n.out.events.empty());
    CHECK_FALSE(n.core.tilted());  // failure_timeout has passed since TILT began
    n.tick_to(2900);
    CHECK(events(n.out) == Lines{"suspected n2 5", "suspected n4 5"});
    n.out.clear();
    n.tick_to(3000);
    CHECK(events(n.out) == Lines{"suspected n3 5"});
  }
  SUBCASE("a second stall is a second TILT") {
    n.core.tick(at(2400), n.out);
    CHECK(n.core.tilt_count() == 2);
    CHECK(n.core.tilted());
  }
  CHECK(n.core.tilt_count() >= 1);
}

TEST_CASE("membership: a probe failure reported after a stall enters TILT instead of failing") {
  Node n;
  n.suspect_n2();
  n.core.on_probe_result(n.direct, false, at(1150), n.out);
  // The loop was frozen; its overdue probe timer runs before its tick timer.
  n.core.on_probe_result(n.indirect, false, at(1900), n.out);
  CHECK(n.core.tilt_count() == 1);
  CHECK(events(n.out) == Lines{"restored n2 5"});
  n.out.clear();
  n.core.tick(at(1900), n.out);
  CHECK(n.core.tilt_count() == 1);  // the same stall, counted once
  CHECK(n.out.events.empty());
  CHECK(n.state("n2") == MemberState::alive);
}

TEST_CASE("membership: state and event names") {
  CHECK(std::string(to_string(MemberState::unknown)) == "unknown");
  CHECK(std::string(to_string(MemberState::alive)) == "alive");
  CHECK(std::string(to_string(MemberState::suspected)) == "suspected");
  CHECK(std::string(to_string(MemberState::failed)) == "failed");
  CHECK(std::string(to_string(MemberState::left)) == "left");
  CHECK(std::string(to_string(MemberEvent::joined)) == "joined");
  CHECK(std::string(to_string(MemberEvent::suspected)) == "suspected");
  CHECK(std::string(to_string(MemberEvent::failed)) == "failed");
  CHECK(std::string(to_string(MemberEvent::restored)) == "restored");
  CHECK(std::string(to_string(MemberEvent::left)) == "left");
}

TEST_CASE("membership: a newer configuration drops removed members from the view and adds new ones unknown") {
  Node n;  // n1..n4, version 1
  for (const char* id : {"n2", "n3", "n4"}) n.hear(id, 5, 0);
  n.out.clear();
  // Version 2: n4 removed, n5 added (indices as a member change gives them).
  Topology v2(2, {{"n1", 0}, {"n2", 1}, {"n3", 2}, {"n5", 4}});
  n.core.adopt(v2, at(100), n.out);
  CHECK(events(n.out) == Lines{"left n4 5"});
  CHECK_FALSE(n.core.find("n4"));
  REQUIRE(n.core.find("n5"));
  CHECK(n.state("n5") == MemberState::unknown);
  CHECK(n.core.topology() == v2);
  n.core.adopt(Topology({"n1", "n2"}), at(110), n.out);  // an older version changes nothing
  CHECK(n.core.topology() == v2);
  // A member heard at another version is heard as usual; a non-member at
  // another version is not refused (the shell exchanges configurations).
  n.out.clear();
  CHECK(n.core.on_heard("n5", 9, addr("n5"), 1, Topology({"n1", "n2", "n3", "n4"}).fingerprint(), at(200), n.out) ==
        Heard::accepted);
  CHECK(n.state("n5") == MemberState::alive);
  CHECK(n.core.on_heard("n4", 5, addr("n4"), 1, 0, at(200), n.out) == Heard::other_config);
  CHECK(n.out.refusals.empty());
  // The same version with another list is still refused, as before versions.
  CHECK(n.core.on_heard("n2", 5, addr("n2"), 2, 12345, at(300), n.out) == Heard::wrong_topology);
  CHECK(n.out.refusals.size() == 1);
  // Removed itself: the view keeps the others, and the invariants hold.
  n.core.adopt(Topology(3, {{"n2", 1}, {"n3", 2}, {"n5", 4}}), at(400), n.out);
  CHECK(n.core.members().size() == 3);
}
