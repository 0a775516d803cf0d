// The configuration record of `cluster/members` and the single-member
// change rules (grid/member_change.h). The change's protocol runs in the
// simulations (quorum_sim_test.cpp, quorum_trace_test.cpp).
#include <doctest/doctest.h>

#include "grid/member_change.h"

using namespace rg;
using namespace rg::grid;

TEST_CASE("member change: one member added at a fresh index, or removed, one version up and unsettled") {
  ConfigRecord v1 = ConfigRecord::of(Topology({"a", "b", "c"}), true);
  CHECK(v1.version == 1);
  CHECK(v1.next_index == 3);
  std::string why;
  auto v2 = changed(v1, "d", true, why);
  REQUIRE(v2);
  CHECK(v2->version == 2);
  CHECK_FALSE(v2->settled);
  CHECK(v2->topology().index_of("d") == MemberIndex{3});
  CHECK(v2->next_index == 4);
  v2->settled = true;
  auto v3 = changed(*v2, "b", false, why);
  REQUIRE(v3);
  CHECK(v3->topology().members() == std::vector<NodeId>{"a", "c", "d"});
  CHECK(v3->topology().index_of("d") == MemberIndex{3});
  CHECK(v3->next_index == 4);  // b's index 1 is never given again
  auto v4 = changed(*v3, "b", true, why);
  REQUIRE(v4);
  CHECK(v4->topology().index_of("b") == MemberIndex{4});
}

TEST_CASE("member change: refuses what is not a change of one member") {
  ConfigRecord v1 = ConfigRecord::of(Topology({"a", "b"}), true);
  std::string why;
  CHECK_FALSE(changed(v1, "a", true, why));
  CHECK(why == "a is a member already");
  CHECK_FALSE(changed(v1, "z", false, why));
  CHECK(why == "z is not a member");
  CHECK_FALSE(changed(v1, "Bad_Id", true, why));
  CHECK(why.find("not a valid node id") != std::string::npos);
  ConfigRecord one = ConfigRecord::of(Topology({"a"}), true);
  CHECK_FALSE(changed(one, "a", false, why));
  CHECK(why == "the last member cannot be removed");
  ConfigRecord full = v1;
  full.next_index = 255;
  CHECK_FALSE(changed(full, "c", true, why));
  CHECK(why.find("run out") != std::string::npos);
}

TEST_CASE("member change: the record survives the register, and a malformed one is refused") {
  ConfigRecord v1 = ConfigRecord::of(Topology({"a", "b", "c"}), true);
  std::string why;
  ConfigRecord v2 = *changed(v1, "d", true, why);
  auto back = config_from_register(config_to_register(v2));
  REQUIRE(back);
  CHECK(*back == v2);
  CHECK(back->topology() == v2.topology());
  CHECK_FALSE(config_from_register(RegValue{"not a record", {}}));
  ConfigRecord bad = v2;
  bad.indices.pop_back();  // an id without an index
  CHECK_FALSE(config_from_register(config_to_register(bad)));
  bad = v2;
  bad.indices[1] = bad.indices[0];  // two members, one index
  CHECK_FALSE(config_from_register(config_to_register(bad)));
}

namespace {

// Answers every prepare in `out` from `who` with a refusal for a newer
// configuration, and hands the results to the change. Returns the prepares.
int refuse_as_stale(QuorumProposer& p, MemberChange& mc, const NodeId& who, Time now, QOut& out) {
  int prepares = 0;
  QOut next;
  for (const auto& s : out.sends) {
    const auto* prep = std::get_if<QPrepare>(&s.msg);
    if (!prep || (!s.to.empty() && s.to != who)) continue;  // empty: to every member
    ++prepares;
    QPromise no;
    no.key = prep->key;
    no.ballot = prep->ballot;
    no.op = prep->op;
    no.stale_config = true;
    no.config_seen = ConfigTag{prep->config.version + 1, 42};
    p.on_promise(who, no, now, next);
  }
  for (const auto& r : std::vector<CasResult>(next.results)) mc.on_result(r, p, now, next);
  out = std::move(next);
  return prepares;
}

}  // namespace

// Adding d to {a,b,c} from a, whose first read b refuses as stale.
struct RefusedAsStale {
  QuorumProposer p{Topology({"a", "b", "c"}), "a"};
  MemberChange mc{"d", true, {}};
  QOut out;
  Time now = Clock::now();
  RefusedAsStale() {
    mc.start(p, now, out);
    REQUIRE(refuse_as_stale(p, mc, "b", now, out) == 1);
  }
};

TEST_CASE_FIXTURE(RefusedAsStale,
                  "member change: refused for a newer configuration it never learns, it asks again, then fails") {
  CHECK(mc.stage() == MemberChange::Stage::reading);
  // The newer configuration never comes (the ask or its answer was lost).
  int reads = 0;
  for (int ms = 100; ms <= 10000 && mc.stage() == MemberChange::Stage::reading; ms += 100) {
    Time t = now + milliseconds(ms);
    QOut tick;
    mc.tick(p, t, tick);
    reads += refuse_as_stale(p, mc, "b", t, tick);
  }
  CHECK(reads >= 3);  // it read again, each time refused again (each refusal asks the refuser again)
  CHECK(mc.stage() == MemberChange::Stage::failed);
  CHECK(mc.why().find("newer configuration") != std::string::npos);
}

TEST_CASE_FIXTURE(RefusedAsStale,
                  "member change: refused as stale, it reads again as soon as the newer configuration is adopted") {
  QOut next;
  mc.adopted(2, p, now + milliseconds(10), next);  // no newer topology in p: only the read again counts
  int prepares = 0;
  for (const auto& s : next.sends) prepares += std::holds_alternative<QPrepare>(s.msg) ? 1 : 0;
  CHECK(prepares > 0);
  CHECK(mc.stage() == MemberChange::Stage::reading);
}
