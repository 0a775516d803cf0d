// FailoverRun's stages: the moves the protocol makes are legal, and the
// shortcuts that would break it (a designation without `prepare`, a
// promotion without acknowledgements, a hand-back turning into a promotion)
// are not.
#include <doctest/doctest.h>

#include <utility>
#include <vector>

#include "agent/failover_run.h"

using namespace rg::agent;

namespace {

const std::vector<RunStage> kStages = {RunStage::idle,         RunStage::confirming,   RunStage::confirm_wait,
                                       RunStage::reserving,    RunStage::prepare_hook, RunStage::designating,
                                       RunStage::broadcasting, RunStage::handing_back, RunStage::establishing};

}  // namespace

TEST_CASE("failover run: each path the agent takes is legal, and any stage may end") {
  using S = RunStage;
  const std::vector<std::vector<S>> paths = {
      {S::idle, S::reserving, S::prepare_hook, S::designating, S::designating, S::broadcasting, S::establishing,
       S::establishing},                                                                      // FIG. 2
      {S::idle, S::confirming, S::confirm_wait, S::confirming, S::reserving, S::prepare_hook},  // master looked alive
      {S::idle, S::designating, S::broadcasting, S::handing_back},                             // claim, then claim 3
      {S::idle, S::broadcasting, S::establishing},                                             // switchover target
  };
  for (const auto& path : paths) {
    FailoverRun r;
    for (std::size_t i = 1; i < path.size(); ++i) {
      CAPTURE(to_string(path[i - 1]));
      CAPTURE(to_string(path[i]));
      CHECK(r.advance(path[i]));
      CHECK(r.stage() == path[i]);
      CHECK(r.running());
    }
  }
  for (S s : kStages) CHECK(FailoverRun::legal(s, S::idle));
}

TEST_CASE("failover run: shortcuts past prepare, the broadcast or a hand-back are refused") {
  using S = RunStage;
  const std::vector<std::pair<S, S>> refused = {
      {S::reserving, S::designating},     // designating without `prepare`
      {S::confirming, S::designating},    // the same, from a confirm
      {S::confirm_wait, S::reserving},    // reserving on a read that lost
      {S::idle, S::establishing},         // promoted without a designation
      {S::designating, S::establishing},  // promoted without acknowledgements
      {S::handing_back, S::establishing}, // claim 3 turned into a promotion
      {S::prepare_hook, S::prepare_hook}, // `prepare` twice in one run
      {S::establishing, S::broadcasting}, // back to broadcasting
  };
  for (const auto& [from, to] : refused) {
    CAPTURE(to_string(from));
    CAPTURE(to_string(to));
    CHECK_FALSE(FailoverRun::legal(from, to));
  }
  FailoverRun r;
  CHECK_FALSE(r.advance(RunStage::establishing));
  CHECK(r.stage() == RunStage::establishing);  // moved anyway: the agent reports the broken invariant
}

TEST_CASE("failover run: a parked run keeps its facts and starts idle") {
  FailoverRun r;
  r.kind = RunKind::claim;
  r.epoch = 7;
  r.reason = "the master role is vacant";
  REQUIRE(r.advance(RunStage::designating));
  FailoverRun p = r.parked();
  CHECK(p.stage() == RunStage::idle);
  CHECK_FALSE(p.running());
  CHECK(p.kind == RunKind::claim);
  CHECK(p.epoch == 7);
  CHECK(p.reason == r.reason);
  CHECK(p.advance(RunStage::broadcasting));  // a designation that surfaced: resume at the broadcast
}
