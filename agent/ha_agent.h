#pragma once
// HaAgent: one node's HA state machine (DESIGN.md "Agent"; the method of
// seeds/role-management-patent.txt, FIG. 2, FIG. 3, claims 1-5).
//
// A pure protocol core, driven by the node's shell on its one thread: every
// input carries `now`; outputs (compare-and-set requests on the role table,
// hook runs, broadcasts, role changes) go into an AgentOutput the shell
// carries out and answers (on_cas_done, on_hook_done, on_broadcast_ack).
// No sockets, no clocks, no processes, no threads inside.
//
// Every state change goes through one enter(...) that checks the transition
// is one the protocol makes; a failover run's stage (failover_run.h) moves
// only through run_to(...), which checks it the same way and enters the
// agent state the stage belongs to; every role change goes through become(...),
// which reports a RoleChange with a stable event name (events.h).
//
// Behaviour where DESIGN.md and issue 3 are silent (details in
// ha_agent.cpp's opening comment):
//   - role() is the role this node last reported (and ran the hook for), not
//     just what the table says: a master that lost its lease is `replica`
//     (its `replica` hook ran) even while the table still names it.
//   - A hand-back names the old master at the handing node's (new) epoch, so
//     epochs only grow and nodes that acknowledged that epoch still accept
//     the old master's messages; the old master takes it with one renewal
//     (+handed-back).
//   - Maintenance stops failovers, not the claim of a vacant role (there is
//     no master to protect); switchover still works during maintenance.
//   - A failed failover that ran `prepare` runs `abort` to undo it.
//   - A 2-member topology promotes nobody unless its other member is a
//     witness; a 1-member topology promotes its only node.
//
// What the shell must do, in short: call set_previous_role() once before
// anything else; call on_ready() when state transfer is done and on_table()
// whenever the local QuorumCopy of the role table changes (a commit may
// reach the copy before or after its on_cas_done(): both work); tick() at
// least every heartbeat_interval / 4; run every CasRequest on the role
// register (wrapping `change` with to_register/from_register; an
// undecodable current value is refused) and answer each with on_cas_done()
// exactly once, passing CasResult.started; answer every HookRun with
// on_hook_done() in order (killed hooks too, with a non-zero status); send
// each BroadcastOrder to every other member (repeats may come; a receiver
// acknowledges when on_broadcast() returns true) and pass the acks to
// on_broadcast_ack().
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/master_lease.h"
#include "agent/role_table.h"
#include "common/clock.h"
#include "common/ids.h"
#include "grid/quorum.h"

namespace rg::agent {

struct AgentConfig {
  NodeId self;
  Topology topology;
  bool witness = false;                           // votes, holds the table, never takes a role
  Duration heartbeat_interval = milliseconds(100);  // renewal period
  Duration failure_timeout = milliseconds(1000);    // also the lease
  Duration failover_timeout = milliseconds(5000);   // bound on the prepare hook
  Duration broadcast_timeout = milliseconds(500);
  Duration failover_backoff = milliseconds(2000);   // no second failover for the same epoch before this
  Duration eviction_delay = milliseconds(5000);     // a failed replica keeps its slot this long
  double drift = 0.05;                              // clock drift bound for the master's own lease check
  std::vector<NodeId> preferred_replicas;           // operator preference, in order
  // Tests only: a planted bug the simulation must catch (never set in the
  // product): count the lease from the commit instead of the operation's start.
  bool plant_lease_from_commit = false;
  // Tests only: run `prepare` without reserving the failover first.
  bool plant_no_reservation = false;
  // Tests only: fail over only from masters the membership sees gone.
  bool plant_membership_only = false;
  // Planted for the simulation's check: a confirm read that finds a later
  // renewal writes it back and detection starts over (the earlier rule).
  bool plant_read_back_moved = false;
  // Planted for the simulation's check: a later renewal a confirm read found
  // is judged a whole failure timeout later, whatever its lease left.
  bool plant_read_ahead_full_wait = false;
  // Tests only: back off from any entry of the epoch a run failed against,
  // even one that renewed since (the earlier rule).
  bool plant_backoff_by_epoch = false;
  // Tests only: a write-back's lease hint on a commit is ignored (an entry
  // first seen counts as renewed at that moment, the earlier rule).
  bool plant_commit_hint_ignored = false;
};

// What the grid says about one member (the shell builds this from membership
// and the `nodes` region).
struct MemberStatus {
  bool alive = false;
  bool synced = false;   // finished state transfer: may become replica
  bool witness = false;
  Time alive_since{};
  std::optional<Role> last_role;     // from its nodes/<id> entry
  std::uint64_t last_role_epoch = 0;
  // Alive, but not heard from for three quarters of a failure timeout or
  // more (or the membership is probing it). A master seen silent has been
  // seen gone for claims 3 and 5: hearing it again is its return. A deaf
  // master, or one cut off from the majority but reaching us, is never
  // silent.
  bool silent = false;
};
using MemberView = std::map<NodeId, MemberStatus>;  // every member but self

// A compare-and-set the shell runs on the role table register. `change`
// returns nullopt to refuse (precondition failed).
struct CasRequest {
  std::uint64_t id = 0;
  std::string purpose;  // "renew", "designate", "establish", "appoint-replica", ...
  std::function<std::optional<RoleTable>(const std::optional<RoleTable>& current)> change;
  // Instead of `change`: a compare-and-set of another register (`key`) by
  // raw value; its result reaches on_cas_done with no table.
  std::string key;
  std::function<std::optional<grid::RegValue>(const std::optional<grid::RegValue>& current)> raw;
  // takeover: a designation or a claim, so acceptors holding another
  // node's live lease refuse even its prepares. holds_lease: a write the
  // master counts its lease from (establish, resume, renew).
  grid::CasMode mode = grid::CasMode::plain;
};

struct HookRun {
  std::string hook;  // prepare | master | replica | data | abort
  Role role = Role::data;
  std::uint64_t epoch = 0;
  NodeId prev_master;
  Duration limit{};
};

// Tell every member the new master and collect acknowledgements.
struct BroadcastOrder {
  std::uint64_t epoch = 0;
  NodeId master;
};

struct RoleChange {
  Role from = Role::data;
  Role to = Role::data;
  std::uint64_t epoch = 0;
  std::string event;   // stable name: +promoted, +demoted, +lease-lost, +handed-back, +vacated, ...
  std::string reason;
};

// A timed step of a failover, for `rolegridctl events`.
struct FailoverStep {
  std::string step;  // detect | prepare | designate | broadcast | establish
  Time start{};
  Time end{};
  std::string outcome;
};

struct AgentOutput {
  std::vector<CasRequest> cas;
  std::vector<HookRun> hooks;
  bool abort_hook = false;  // stop the running prepare hook (claim 5)
  std::vector<BroadcastOrder> broadcasts;
  std::vector<RoleChange> changes;
  std::vector<FailoverStep> steps;
  std::vector<std::string> notes;  // one-line log messages worth an operator's eye
  void clear() { *this = AgentOutput{}; }
};

enum class AgentState {
  starting,      // waiting for the grid to sync and the first role table
  data,
  replica,
  preparing,     // replica running the prepare hook (failover operation)
  designating,   // compare-and-set to {self, epoch+1, designated} in flight
  broadcasting,  // designated; collecting acknowledgements
  establishing,  // compare-and-set to established in flight
  master,        // established and within its lease
  witness,
};
const char* to_string(AgentState s);

// What a compare-and-set on the role table is for; decides who handles its
// outcome. Internal to HaAgent (here because its private functions take it).
enum class CasOp : std::uint8_t {
  read,          // identity change: a linearizable read
  renew,         // the acting master's lease renewal
  resume,        // FIG. 3: renew from exactly the entry that names us (purpose "renew")
  replica_self,  // FIG. 3: a restored master takes the replica slot
  appoint,
  release,       // lease 0 before a switchover or a graceful stop
  handover,
  designate,
  claim,
  establish,
  hand_back,
  vacate,
  maintenance,
  reserve,       // the failover reservation (kFailoverKey), before `prepare`
  unreserve,     // a failed run gives its reservation back
  confirm,       // a quorum read that writes nothing: has the master's entry stopped?
};

// How each operation stands to the register's lease: the master counts its
// lease only from establish, resume and renew (see grid::CasMode).
grid::CasMode lease_mode(CasOp op);

enum class RunStage;  // failover_run.h

class HaAgent {
 public:
  HaAgent(AgentConfig config, Time now);

  // What this process was when it last ran (from its own nodes/<id> entry or
  // state file), called once before on_ready. A node that was master goes
  // through FIG. 3 (read the table, then demote, resume or claim) instead of
  // simply following the table.
  void set_previous_role(Role role, std::uint64_t epoch);

  // The grid finished state transfer and the table can be trusted to be read.
  void on_ready(Time now, AgentOutput& out);
  // The local copy of the role table changed (a commit was pushed to us).
  // `lease_left_ms`: the commit's hint when it wrote back a value found at
  // the acceptors (QCommit::lease_left_ms): a master entry first seen then
  // counts as renewed that much less than a lease ago, not just now.
  void on_table(const std::optional<RoleTable>& table, Time now, AgentOutput& out,
                std::optional<std::int64_t> lease_left_ms = std::nullopt);
  void on_members(const MemberView& view, Time now, AgentOutput& out);
  // The node adopted a newer member configuration (issue 14): quorums,
  // eligibility and the two-member rule follow it.
  void on_config(const Topology& t, Time now, AgentOutput& out);
  // `value_lease_left_ms`: the register's hint (CasResult's) of how long
  // the acceptors still hold `value`'s lease, when it gave one.
  void on_cas_done(std::uint64_t id, grid::CasOutcome outcome, const std::optional<RoleTable>& value,
                   Time started, Time now, AgentOutput& out,
                   std::optional<std::int64_t> value_lease_left_ms = std::nullopt);
  void on_hook_done(const std::string& name, int exit_status, Time now, AgentOutput& out);
  // A broadcast from `master` for `epoch`; returns whether to acknowledge it
  // (refused when this node has seen a newer epoch).
  bool on_broadcast(const NodeId& master, std::uint64_t epoch, Time now, AgentOutput& out);
  void on_broadcast_ack(const NodeId& from, std::uint64_t epoch, Time now, AgentOutput& out);
  void tick(Time now, AgentOutput& out);

  // Operator actions. Return an empty string when started, else why not.
  // early_handover: a planted hole (fault injection only) that hands over
  // without waiting for our step-down hook, to show the checks catch it.
  std::string switchover(const NodeId& to, Time now, AgentOutput& out, bool early_handover = false);
  std::string set_maintenance(bool on, Time now, AgentOutput& out);
  // Graceful stop: a master releases its lease so a successor need not wait.
  void on_shutdown(Time now, AgentOutput& out);

  Role role() const;
  AgentState state() const { return state_; }
  // Acting as master right now: established and within its own lease bound.
  bool acting_master(Time now) const;
  Time lease_bound() const { return lease_.bound(); }
  std::uint64_t epoch_seen() const { return epoch_seen_; }
  const std::optional<RoleTable>& table() const { return table_; }
  const std::vector<FailoverStep>& last_failover() const { return last_failover_; }
  // Epoch of this node's own master entry (designated or established), 0 if none yet.
  std::uint64_t master_epoch() const;
  // Broadcasts refused because they carried an epoch older than one seen.
  std::uint64_t refused_broadcasts() const;
  // False for a 2-member topology without a witness: nobody is promoted.
  bool automatic_promotion() const;
  // Empty if the agent's invariants hold, else the first broken one. Checked
  // after every input in builds without NDEBUG (a broken one aborts).
  std::string check_invariants(Time now) const;

 private:
  AgentConfig config_;
  AgentState state_ = AgentState::starting;
  std::optional<RoleTable> table_;
  MemberView members_;
  MasterLease lease_;  // our own lease while master (agent/master_lease.h)
  std::uint64_t epoch_seen_ = 0;
  std::vector<FailoverStep> last_failover_;
  // The implementation adds what it needs below.
  struct Impl;
  std::shared_ptr<Impl> impl_;

  using Change = decltype(CasRequest::change);

  // ha_agent.cpp: inputs, roles, bookkeeping.
  void begin_input(Time now, AgentOutput& out);
  void end_input(Time now, AgentOutput& out);
  void evaluate(Time now, AgentOutput& out);
  void idle(Time now, AgentOutput& out);
  void settle(Time now, AgentOutput& out, const std::string& reason);
  void set_table(const std::optional<RoleTable>& table, Time now, std::optional<std::int64_t> lease_left_ms = std::nullopt);
  Time moved_at(const std::optional<MasterEntry>& m, std::optional<std::int64_t> left, Time now) const;
  // Every change of state_ goes through here; an invalid transition is an
  // invariant broken (check_invariants reports it; debug builds abort).
  void enter(AgentState to);
  // Every change of the failover run's stage goes through here: it checks
  // the move (FailoverRun::legal) and enters the agent state that stage
  // belongs to.
  void run_to(RunStage to);
  void become(Role to, const std::string& name, const std::string& reason, std::uint64_t epoch,
              const NodeId& prev_master, AgentOutput& out);
  void report(const std::string& name, const std::string& reason, std::uint64_t epoch,
              AgentOutput& out);
  void run_hook(const std::string& name, Role role, std::uint64_t epoch, const NodeId& prev_master,
                AgentOutput& out);
  std::uint64_t issue(const std::string& purpose, CasOp op, Change change, Time now, AgentOutput& out,
                      bool role_slot = true);
  // A compare-and-set of another register than the role table (holds the role slot).
  std::uint64_t issue_raw(const std::string& purpose, CasOp op, const std::string& key,
                          decltype(CasRequest::raw) change, Time now, AgentOutput& out, bool role_slot = true);
  std::uint64_t submit(CasRequest req, CasOp op, Time now, AgentOutput& out, bool role_slot,
                       std::shared_ptr<std::optional<std::optional<RoleTable>>> saw,
                       std::shared_ptr<std::vector<RoleTable>> made);
  bool alive(const NodeId& id) const;
  bool heard(const NodeId& id) const;  // alive and not silent
  bool eligible_self() const;
  // This node sees a majority of members alive (itself included).
  bool sees_majority() const;
  bool names_self_replica() const;
  void expire_cas(Time now, AgentOutput& out);

  // ha_agent_master.cpp: the master's lease and tasks, FIG. 3, operator actions.
  void master_tasks(Time now, AgentOutput& out);
  // Our establish or resume committed: act as master at `epoch`.
  void start_acting(std::uint64_t epoch, Time started, Time now);
  void stop_acting(const std::string& name, const std::string& reason, Time now, AgentOutput& out);
  void recover(Time now, AgentOutput& out);
  void renew(Time now, AgentOutput& out);
  void resume(const MasterEntry& entry, Time now, AgentOutput& out);
  void replica_self(const MasterEntry& master, Time now, AgentOutput& out);
  void appoint_replica(Time now, AgentOutput& out);
  bool replica_needs_replacing(Time now, std::string& why) const;
  std::optional<NodeId> choose_replica() const;
  void handover(Time now, AgentOutput& out);
  void on_master_cas(CasOp op, grid::CasOutcome outcome, const std::optional<RoleTable>& value,
                     Time started, Time now, AgentOutput& out);
  // on_master_cas for the operations that change this node's role
  void on_resumed(grid::CasOutcome outcome, Time started, Time now, AgentOutput& out);
  void on_replica_self(grid::CasOutcome outcome, const std::optional<RoleTable>& value, Time now, AgentOutput& out);
  void on_switchover_step(CasOp op, grid::CasOutcome outcome, Time now, AgentOutput& out);

  // ha_agent_failover.cpp: FIG. 2 (claims 2-5), claims of a vacant role,
  // switchover targets, broadcast and establish.
  void release_reservation(const FailoverReservation& mine, Time now, AgentOutput& out);
  bool failure_detected(Time now) const;
  bool backing_off(Time now) const;
  Duration stagger() const;  // how long this node lets longer-alive ones go first
  bool master_restored() const;
  bool data_node_turn(Time now) const;
  struct Judged {
    MasterEntry entry;
    Time since;      // unchanged from then on
    Time failed_at;  // failed for failover from then on
  };
  Judged judged_entry() const;
  // How long a master's entry must stand still to count as failed.
  Duration entry_wait(const NodeId& master) const;
  bool our_designation_committed() const;
  void start_failover(Time now, AgentOutput& out);
  bool failing_alive() const;
  void confirm(Time now, AgentOutput& out);
  void on_confirmed(grid::CasOutcome outcome, const std::optional<RoleTable>& value,
                    std::optional<std::int64_t> lease_left_ms, Time now, AgentOutput& out);
  Duration read_ahead_wait(std::optional<std::int64_t> lease_left_ms) const;
  void reserve(Time now, AgentOutput& out);
  void on_reserved(grid::CasOutcome outcome, const std::optional<FailoverReservation>& sent, Time now,
                   AgentOutput& out);
  void run_prepare(Time now, AgentOutput& out);
  void check_prepare(Time now, AgentOutput& out);
  void prepare_done(int status, Time now, AgentOutput& out);
  void designate(Time now, AgentOutput& out);
  void track_designation(std::uint64_t cas_id);
  void maybe_claim(Time now, AgentOutput& out);
  void start_target(Time now, AgentOutput& out);
  void begin_broadcast(Time now, AgentOutput& out);
  void check_broadcast(Time now, AgentOutput& out);
  void retry_designate(Time now, AgentOutput& out);
  void establish(Time now, AgentOutput& out);
  void hand_back(Time now, AgentOutput& out);
  void vacate(Time now, AgentOutput& out);
  void end_failover(const std::string& name, const std::string& reason, Time now, AgentOutput& out);
  void step(const std::string& name, Time start, Time end, const std::string& outcome,
            AgentOutput& out);
  void on_failover_cas(CasOp op, grid::CasOutcome outcome, const std::optional<RoleTable>& value,
                       Time started, Time now, AgentOutput& out);
  // on_failover_cas for each operation of a run
  void on_designated(CasOp op, grid::CasOutcome outcome, const std::optional<RoleTable>& value, Time now,
                     AgentOutput& out);
  void on_established(grid::CasOutcome outcome, Time started, Time now, AgentOutput& out);
  void on_handed_back(grid::CasOutcome outcome, Time now, AgentOutput& out);
  void on_vacated(grid::CasOutcome outcome, Time now, AgentOutput& out);
  void read_soon(Time now);
};

}  // namespace rg::agent
