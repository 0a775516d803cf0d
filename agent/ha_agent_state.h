#pragma once
// HaAgent's private state, shared by its three source files:
//   ha_agent.cpp           inputs, roles, hooks, invariants;
//   ha_agent_master.cpp    the master's lease and cluster tasks, FIG. 3
//                          (a restored master), switchover, shutdown;
//   ha_agent_failover.cpp  FIG. 2 (the replica's failover, claims 2-5), the
//                          claim of a vacant role, broadcast and establish.
// The run itself (its stages and their legal moves) is failover_run.h.
// Not part of the agent's interface; only those files include it.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/failover_run.h"
#include "agent/ha_agent.h"

namespace rg::agent {

struct PendingCas {
  std::string purpose;
  CasOp op = CasOp::read;
  Time issued{};
  std::optional<RoleTable> table_at_issue;
  // What the change function saw when the shell last ran it. If our table
  // still equals it (or has not moved since issue), a commit is the very
  // next value and we adopt it without waiting for on_table.
  std::shared_ptr<std::optional<std::optional<RoleTable>>> saw;
  // Every value the change function made. Another proposer may finish our
  // half-accepted write (CASPaxos does), and our own attempt then reports
  // precondition_failed against one of these (or it renewed). Such a value
  // may also have been accepted by a minority only, so a read settles it.
  std::shared_ptr<std::vector<RoleTable>> made;
  std::optional<CasOp> settles;  // a read settling this op's ambiguous result
  Time settles_started{};
  std::optional<FailoverReservation> reservation;  // what a reserve op writes
};

struct HaAgent::Impl {
  Time started_at{};  // process start: our own "alive since"
  bool ready = false;
  bool have_table = false;
  bool reported = false;  // a first role has been reported (and its hook run)
  Role role = Role::data;
  std::optional<Role> previous_role;
  std::uint64_t previous_epoch = 0;
  std::optional<Role> last_hook_role;
  std::vector<std::string> queued_notes;  // from the constructor, flushed on the first input
  bool two_member_no_witness = false;

  // Compare-and-sets in flight. Only one of them changes roles at a time
  // (role_cas); a maintenance change may run beside it.
  std::uint64_t next_cas_id = 1;
  std::map<std::uint64_t, PendingCas> pending;
  std::uint64_t role_cas = 0;

  // Master.
  std::uint64_t my_epoch = 0;          // epoch of our own master entry
  // (epoch, renewal) of the last renewal we proposed: the next one goes
  // above it even if that one reached a few acceptors only.
  std::shared_ptr<std::pair<std::uint64_t, std::uint64_t>> last_renewal =
      std::make_shared<std::pair<std::uint64_t, std::uint64_t>>();
  std::uint64_t last_master_epoch = 0; // highest epoch we acted as master at
  std::uint64_t life_master_epoch = 0; // ... in this process's life (0: none yet)
  // The table this process proposed to take over its earlier process's entry
  // at a new epoch (resume): a retry finishes it rather than bumping again.
  std::shared_ptr<std::optional<RoleTable>> restart_value = std::make_shared<std::optional<RoleTable>>();
  // What the resume in flight does: renew our own entry, take a hand-back,
  // or take over an earlier process's entry at a new epoch.
  enum class Resume { renew, hand_back, new_epoch } resume_kind = Resume::renew;
  Time next_appoint{};
  std::string appoint_note;            // last "no candidate" note, said once

  // FIG. 3: a master restored after losing its lease, a refusal or a restart.
  bool recovering = false;
  bool demote_reported = false;
  bool need_read = false;              // read the table (identity CAS) before deciding
  Time next_read{}, resume_retry_at{};

  // What we observed of the master entry, and since when it is unchanged.
  std::optional<MasterEntry> observed;
  Time observed_since{};
  // When this process last saw the master entry move (a renewal, a new
  // epoch), not counting its first sight of one: a master whose entry has
  // moved since its process began is past FIG. 3's recovery.
  Time entry_moved_at{};
  // A later renewal of the same entry that a confirm read found in the
  // register but our copy lacks (a partial renewal of a master cut off from
  // the majority, or one not pushed to us yet), and when. Detection then
  // judges this entry from then on, without writing it back: a write-back
  // would commit a renewal that may never have counted.
  std::optional<MasterEntry> read_ahead;
  Time read_ahead_since{};
  Duration read_ahead_wait{};  // judged failed this long after read_ahead_since
  Time maintenance_off_at{};  // failovers are possible again from here
  NodeId last_seen_master;

  // Failover and claims.
  FailoverRun run;
  // A run that ended without a commit of its designation, whose value may
  // still surface (accepted by a few acceptors, then completed by someone
  // else's read): if the table later designates us with one of its values,
  // the run resumes (with its failing master, so claim 3 still applies).
  FailoverRun orphan;
  std::shared_ptr<std::vector<RoleTable>> orphan_made;
  // The entry our last failover run judged failed (its epoch and renewal),
  // and when it ended: failover_backoff holds back a second run against
  // that same entry only. Once the entry moved (the master renewed after
  // our run ended), a new silence is a new failure.
  bool has_attempt = false;
  std::uint64_t attempt_epoch = 0;
  std::uint64_t attempt_renewal = 0;
  Time attempt_at{};
  // Runs whose `prepare` ran and was aborted, in a row, against masters of
  // this epoch: from the second on, the backoff holds for the whole epoch
  // (a master that keeps stalling and coming back gets one prepare per
  // backoff, not one per stall).
  std::uint64_t aborted_epoch = 0;
  int aborted_runs = 0;
  Time claim_not_before{};
  std::uint64_t abandoned_epoch = 0;   // a designation of ours we gave up but could not vacate
  std::uint64_t prepares_emitted = 0, prepares_done = 0;
  // The reservation we last yielded to, and since when (our clock): after
  // longer than a prepare can run it is stale and may be taken over.
  std::optional<FailoverReservation> yielded_to;
  Time yielded_since{};
  std::uint64_t reservations = 0;  // reservations this process wrote (their `attempt`)

  // Members: since when each has been unfit (not alive or not synced).
  std::map<NodeId, Time> unfit_since;

  std::optional<NodeId> switch_to;
  // A switchover hands the role over only once the step-down hook it
  // emitted has finished or been killed (hooks are answered in order), so
  // the new master's `master` hook never overlaps it.
  std::string stepdown_hook;       // empty: none to wait for
  bool release_committed = false;  // the release is in, the handover waits for the hook
  bool shutting_down = false;
  std::uint64_t refused_broadcasts = 0;
  std::string broken;  // an invariant a transition found broken (reported by check_invariants)
};

}  // namespace rg::agent
