// FailoverRun's stages and the moves between them (failover_run.h).
#include "agent/failover_run.h"

#include <algorithm>
#include <initializer_list>

namespace rg::agent {

const char* to_string(RunStage s) {
  switch (s) {
    case RunStage::idle: return "idle";
    case RunStage::confirming: return "confirming";
    case RunStage::confirm_wait: return "confirm-wait";
    case RunStage::reserving: return "reserving";
    case RunStage::prepare_hook: return "prepare-hook";
    case RunStage::designating: return "designating";
    case RunStage::broadcasting: return "broadcasting";
    case RunStage::handing_back: return "handing-back";
    case RunStage::establishing: return "establishing";
  }
  return "?";
}

// Without a reservation (a planted bug only) a run goes from confirming or
// idle straight to prepare_hook; the simulation must catch that run.
bool FailoverRun::legal(RunStage from, RunStage to) {
  using S = RunStage;
  if (to == S::idle) return true;  // a run may end from anywhere
  auto any_of = [to](std::initializer_list<S> l) { return std::find(l.begin(), l.end(), to) != l.end(); };
  switch (from) {
    case S::idle: return any_of({S::confirming, S::reserving, S::prepare_hook, S::designating, S::broadcasting});
    case S::confirming: return any_of({S::confirm_wait, S::reserving, S::prepare_hook});
    case S::confirm_wait: return to == S::confirming;
    case S::reserving: return to == S::prepare_hook;
    case S::prepare_hook: return to == S::designating;
    case S::designating: return any_of({S::designating, S::broadcasting});
    case S::broadcasting: return any_of({S::handing_back, S::establishing});
    case S::handing_back: return false;
    case S::establishing: return to == S::establishing;
  }
  return false;
}

bool FailoverRun::advance(RunStage to) {
  bool ok = legal(stage_, to);
  stage_ = to;
  return ok;
}

FailoverRun FailoverRun::parked() const {
  FailoverRun p = *this;
  p.stage_ = RunStage::idle;
  return p;
}

}  // namespace rg::agent
