#pragma once
// FailoverRun: one attempt of this node to become master (FIG. 2's
// failover, the claim of a vacant role, or a switchover's target), as a
// state machine of its own. Its stage moves only along the edges
// FailoverRun::legal allows; HaAgent::run_to is the one place that moves
// it, and it keeps the agent's state in step (a run's stages refine the
// agent's preparing, designating, broadcasting and establishing).
//
// The facts a run carries (what it fails over from, what it proposed, its
// acknowledgements) stay plain fields: the agent's steps read and fill them.
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/role_table.h"
#include "common/clock.h"
#include "common/ids.h"

namespace rg::agent {

// How a run towards mastership started.
enum class RunKind {
  failover,  // FIG. 2: the replica, from the master entry it saw failing
  claim,     // the role is vacant (or held by a dead designated node)
  target,    // the table designates us (switchover, or our own designation before a restart)
};

// Where a run stands. A failover goes confirming (only when the master
// looked alive) -> reserving -> prepare_hook -> designating; a claim starts
// at designating, a switchover target at broadcasting. Every run may end
// (idle) from any stage.
enum class RunStage {
  idle,          // no run
  confirming,    // the quorum read confirming the master's entry stopped is out
  confirm_wait,  // that read lost to rival ballots: read again at confirm_again
  reserving,     // the reservation compare-and-set is out; no `prepare` yet
  prepare_hook,  // `prepare` (the failover operation) runs
  designating,   // the designation (or claim) is out, or retried every heartbeat
  broadcasting,  // designated: collecting acknowledgements (or vacating, claim 4)
  handing_back,  // claim 3: the old master came back; handing it the role (or vacating)
  establishing,  // the establish compare-and-set is out, or retried
};
const char* to_string(RunStage s);

class FailoverRun {
 public:
  // The transitions a run makes (a stage to itself: a retry).
  static bool legal(RunStage from, RunStage to);

  RunStage stage() const { return stage_; }
  bool running() const { return stage_ != RunStage::idle; }
  // Moves to `to`; false if that is not a legal move (it moves anyway: the
  // caller reports the broken invariant).
  bool advance(RunStage to);
  // This run's facts, idle: a designation that ended without a commit is
  // kept so that a later commit of it can resume the run (its failing
  // master included, so claim 3 still applies).
  FailoverRun parked() const;

  RunKind kind = RunKind::failover;
  std::optional<MasterEntry> failing;  // the exact entry we change from (nullopt: vacant)
  bool was_replica = false;            // give the replica slot back if this fails
  bool by_renewal = false;             // the master looked alive: judged by its entry alone
  Time confirm_again{};                // confirm_wait: read again then
  bool owes_abort = false;             // `prepare` ran: a failure owes an `abort`
  std::optional<FailoverReservation> reservation;  // the one we wrote
  // The reservation the change function found held by another node.
  std::shared_ptr<std::optional<FailoverReservation>> held_by;
  std::uint64_t prepare_index = 0;     // which emitted prepare hook is ours
  Time started{}, step_start{}, retry_at{};
  bool saw_lease_held = false;         // a later no_quorum is the lease's edge, not a minority
  std::shared_ptr<std::vector<RoleTable>> made;  // every value our designations proposed
  std::shared_ptr<std::vector<RoleTable>> back_made;  // every hand-back we proposed (claim 3)
  std::uint64_t epoch = 0;             // our designated epoch
  std::set<NodeId> acks;
  Time broadcast_start{}, next_broadcast{};
  std::string reason;
  NodeId prev_master;

 private:
  RunStage stage_ = RunStage::idle;
};

}  // namespace rg::agent
