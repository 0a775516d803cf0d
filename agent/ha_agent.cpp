// HaAgent: inputs, roles, hooks and invariants. The master's side (lease,
// FIG. 3, cluster tasks, operator actions) is in ha_agent_master.cpp, the
// replica's failover (FIG. 2) and claims in ha_agent_failover.cpp.
//
// Choices made where DESIGN.md and issue 3 are silent:
//   - Roles. role() is what this node last reported and ran the hook for.
//     A node leaves `starting` when on_ready() and a first on_table() came;
//     its first role is reported then (from the role set_previous_role()
//     gave, if any) and its hook runs, so an operator's scripts always see
//     the initial role. A witness reports `witness` and runs no hooks.
//   - Hooks. Every role change runs that role's hook; a failover that ran
//     `prepare` and then does not promote runs `abort` to undo it (claims
//     5, 2's re-check, 3, 4 and refusals). prepare gets failover_timeout
//     as its limit, the others 0 (the shell's --hook-timeout). HookRun.prev_master is the master before the change.
//   - Events that keep the role (+vacated, +handed-back, +failover-aborted,
//     and +demoted after +lease-lost) are reported as RoleChanges with
//     from == to and run no hook, so the last hook still matches the role.
//   - Hand-back (claim 3) writes the old master's entry at the handing
//     node's epoch (not the old one): every table that names a master then
//     has master.epoch == table.epoch, epochs only grow, and nodes that
//     acknowledged that epoch still accept the old master. The old master
//     takes it back with one renewal from exactly that entry (+handed-back).
//   - Vacancy. Maintenance does not stop the claim of a vacant role (there
//     is no master to protect). Claim order: the replica and a restored old
//     master at once; any other eligible node after (1 + 2 * position)
//     heartbeats, position = its place among eligible members ordered by
//     how long they have been alive (in failure_timeout buckets, so nodes
//     that started together count as equally old), ties by member order.
//     A designated entry whose node has been not alive and unchanged for
//     failure_timeout + broadcast_timeout counts as vacant (a designated
//     master holds no lease and may have died mid-broadcast).
//   - Failover backoff counts from the end of each attempt (a prepare hook
//     may run for up to failover_timeout), whatever its outcome, for the
//     master epoch it was against. After a vacate or a claim without
//     quorum this node waits failover_backoff before claiming again.
//   - A designate refused by the table (it moved on) is followed by a read,
//     since our copy was evidently stale. If only the renewal counter was
//     newer than our copy (typical: a killed master's last renewal was
//     accepted but never pushed) and the master is still not alive, the
//     designation is retried at once from the entry the register reported,
//     within failover_timeout: the acceptors' lease rule still keeps it out
//     until that renewal's lease has run out. Not via a read: writing the
//     dead master's entry back gives acceptors that held an older one its
//     remaining lease, and takes a round trip.
//   - The register's answers are ambiguous (CASPaxos): a value refused or
//     not committed may have been accepted by a few acceptors and finished
//     later by another node's read. So every change function commits a
//     current value it made itself (or that value renewed) as it is; a
//     refusal against our own value is settled by a read before acting on
//     it; a designation whose CAS failed is remembered and, if the table
//     later designates us with it, the same failover carries on (claim 3
//     still applies; its abort hook already ran, prepare is not rerun); and
//     a hand-back without quorum is retried while the old master stays.
//   - A no_quorum after lease_held answers, or after a retry from a
//     renewal our copy had missed, in the same failover is the lease's
//     edge, not a minority: designate is retried (within failover_timeout)
//     instead of backing off.
//   - A designation of a live node that stays unchanged past the broadcast
//     timeout makes nodes re-read the table (the replica every heartbeat,
//     others every failure_timeout): a switchover's target may have missed
//     the commit that names it, and a read pushes the table again.
//   - A 2-member topology promotes nobody (no failover, no claim, no
//     switchover) unless its other member is a witness; 1 member promotes
//     itself (no split brain is possible).
//   - A current replica that is alive but not synced (restarting, in state
//     transfer) keeps its slot for eviction_delay, like a failed one.
//   - A compare-and-set the shell never answers is given up after four
//     failure_timeouts (as if it had found no quorum).
#include "agent/events.h"
#include "agent/ha_agent.h"

#include <algorithm>
#include <initializer_list>
#include <cstdio>
#include <cstdlib>
#include <tuple>

#include <fmt/format.h>

#include "agent/ha_agent_state.h"

namespace rg::agent {

const char* to_string(AgentState s) {
  switch (s) {
    case AgentState::starting: return "starting";
    case AgentState::data: return "data";
    case AgentState::replica: return "replica";
    case AgentState::preparing: return "preparing";
    case AgentState::designating: return "designating";
    case AgentState::broadcasting: return "broadcasting";
    case AgentState::establishing: return "establishing";
    case AgentState::master: return "master";
    case AgentState::witness: return "witness";
  }
  return "?";
}

namespace {

const char* hook_for(Role r) {
  switch (r) {
    case Role::master: return hook::master;
    case Role::replica: return hook::replica;
    case Role::data: return hook::data;
    case Role::witness: return "";
  }
  return "";
}

// `v` is `mine`, or `mine` with later renewals of the same master entry:
// our write went in (finished by another proposer) and the master renewed.
// The reason is only words for operators (taking a hand-back rewrites it).
bool descends(const RoleTable& v, const RoleTable& mine) {
  if (v == mine) return true;
  if (!v.master || !mine.master || v.master->renewal < mine.master->renewal) return false;
  RoleTable renewed = mine;
  renewed.master->renewal = v.master->renewal;
  renewed.master->lease_ms = v.master->lease_ms;
  renewed.reason = v.reason;
  return renewed == v;
}

}  // namespace

HaAgent::HaAgent(AgentConfig config, Time now)
    : config_(std::move(config)),
      lease_(config_.failure_timeout, config_.drift, config_.heartbeat_interval, config_.plant_lease_from_commit),
      impl_(std::make_shared<Impl>()) {
  impl_->started_at = now;
  // Reservation attempts count on from the start time, so a restarted
  // process never writes one equal to an earlier process's.
  impl_->reservations = static_cast<std::uint64_t>(now.time_since_epoch().count());
  impl_->observed_since = now;
  if (config_.topology.size() == 2 && !config_.witness)
    impl_->queued_notes.push_back(
        "2-member topology: no automatic promotion (no failover, no claim, no switchover) unless the "
        "other member is a witness; add a witness member to fail over safely");
}

void HaAgent::set_previous_role(Role role, std::uint64_t epoch) {
  impl_->previous_role = role;
  impl_->previous_epoch = epoch;
  if (role == Role::master) impl_->last_master_epoch = epoch;
  epoch_seen_ = std::max(epoch_seen_, epoch);
}

// --- inputs ------------------------------------------------------------------

void HaAgent::on_ready(Time now, AgentOutput& out) {
  begin_input(now, out);
  impl_->ready = true;
  end_input(now, out);
}

void HaAgent::on_table(const std::optional<RoleTable>& table, Time now, AgentOutput& out,
                       std::optional<std::int64_t> lease_left_ms) {
  begin_input(now, out);
  if (!impl_->have_table || table != table_) set_table(table, now, config_.plant_commit_hint_ignored ? std::nullopt : lease_left_ms);
  end_input(now, out);
}

void HaAgent::on_config(const Topology& t, Time now, AgentOutput& out) {
  begin_input(now, out);
  if (t.version() > config_.topology.version()) {
    config_.topology = t;
    if (t.size() == 2 && !config_.witness)
      out.notes.push_back("2-member configuration: no automatic promotion (no failover, no claim, no switchover) "
                          "unless the other member is a witness; add a member to fail over safely");
  }
  end_input(now, out);
}

void HaAgent::on_members(const MemberView& view, Time now, AgentOutput& out) {
  begin_input(now, out);
  members_ = view;
  members_.erase(config_.self);
  for (const auto& id : config_.topology.members()) {
    if (id == config_.self) continue;
    auto it = members_.find(id);
    bool fit = it != members_.end() && it->second.alive && it->second.synced;
    if (fit)
      impl_->unfit_since.erase(id);
    else
      impl_->unfit_since.emplace(id, now);  // keeps the earliest
  }
  // A run begun while the failing master was heard judges it by its entry
  // alone. Once the membership stops hearing it (silent, or failed), its
  // return counts as a restore again (claims 3 and 5), as in a run begun
  // after that: a paused master resumed during our broadcast gets its role
  // back.
  FailoverRun& r = impl_->run;
  if (r.running() && r.by_renewal && r.failing && !heard(r.failing->node)) r.by_renewal = false;
  end_input(now, out);
}

void HaAgent::on_cas_done(std::uint64_t id, grid::CasOutcome outcome, const std::optional<RoleTable>& value,
                          Time started, Time now, AgentOutput& out, std::optional<std::int64_t> value_lease_left_ms) {
  // `started` stays a lower bound of every acceptance of our value, even
  // when another proposer finished it: it could not accept what we had not
  // yet proposed.
  begin_input(now, out);
  Impl& im = *impl_;
  auto it = im.pending.find(id);
  if (it == im.pending.end()) {  // given up earlier, or not ours
    end_input(now, out);
    return;
  }
  PendingCas p = std::move(it->second);
  im.pending.erase(it);
  bool current = id == im.role_cas;
  if (current) im.role_cas = 0;
  if (p.op == CasOp::reserve || p.op == CasOp::unreserve) {  // another register: no table to adopt
    if (p.op == CasOp::reserve) on_reserved(outcome, p.reservation, now, out);  // a release needs no answer
    end_input(now, out);
    return;
  }
  if (p.op == CasOp::confirm) {  // a read that wrote nothing: its value may be a minority's
    on_confirmed(outcome, value, value_lease_left_ms, now, out);
    end_input(now, out);
    return;
  }
  auto ours = [&](const std::optional<RoleTable>& v) {
    return v && std::any_of(p.made->begin(), p.made->end(), [&](const RoleTable& m) { return descends(*v, m); });
  };
  if (outcome == grid::CasOutcome::precondition_failed && p.op != CasOp::read && !p.settles && ours(value)) {
    // Refused against our own value: finished by another proposer, or only
    // accepted by a few. A read commits whatever is current and tells.
    if (current || p.op == CasOp::maintenance) {
      std::uint64_t read =
          issue("read", CasOp::read, [](const std::optional<RoleTable>& cur) { return cur; }, now, out, current);
      // A lease is counted from its commit (the settled op's start): its
      // accepts must restart the acceptors' clocks as that op's would have.
      if (lease_mode(p.op) == grid::CasMode::holds_lease) out.cas.back().mode = grid::CasMode::holds_lease;
      PendingCas& r = im.pending[read];
      r.settles = p.op;
      r.settles_started = started;
      r.made = p.made;
    }
    end_input(now, out);
    return;
  }
  bool committed = outcome == grid::CasOutcome::committed;  // before a settling read's verdict
  if (p.settles) {  // the settling read: answer for the op it settles
    if (outcome == grid::CasOutcome::committed) {
      if (!ours(value)) outcome = grid::CasOutcome::precondition_failed;
      // else: our value was chosen, no earlier than the op's start
      started = p.settles_started;
    }
    p.op = *p.settles;
  }

  bool read_empty = p.op == CasOp::read && outcome == grid::CasOutcome::precondition_failed && !value;
  if ((committed && value) || read_empty) {
    // Adopt our own commit unless our copy has since moved somewhere else:
    // the shell's on_table stays the authority on newer values.
    bool fresh = !im.have_table || table_ == p.table_at_issue || (p.saw->has_value() && **p.saw == table_);
    if (fresh && (!im.have_table || table_ != value)) set_table(value, now);
  }
  if (current || p.op == CasOp::maintenance) {
    switch (p.op) {
      case CasOp::designate:
      case CasOp::claim:
      case CasOp::establish:
      case CasOp::hand_back:
      case CasOp::vacate:
        on_failover_cas(p.op, outcome, value, started, now, out);
        break;
      default:
        on_master_cas(p.op, outcome, value, started, now, out);
    }
  }
  end_input(now, out);
}

void HaAgent::on_hook_done(const std::string& name, int exit_status, Time now, AgentOutput& out) {
  begin_input(now, out);
  Impl& im = *impl_;
  if (!im.stepdown_hook.empty() && name == im.stepdown_hook) {
    im.stepdown_hook.clear();
    if (im.release_committed && im.switch_to) {
      im.release_committed = false;
      out.notes.push_back(fmt::format("step-down hook {} done: handing over to {}", name, *im.switch_to));
      handover(now, out);
    }
  }
  if (name == hook::prepare) {
    ++im.prepares_done;
    // Only the answer to our own, still running prepare counts; the shell
    // answers killed ones too, in order.
    if (im.run.stage() == RunStage::prepare_hook && im.prepares_done == im.run.prepare_index)
      prepare_done(exit_status, now, out);
  } else if (exit_status != 0) {
    out.notes.push_back(fmt::format("hook {} exited with status {}", name, exit_status));
  }
  end_input(now, out);
}

bool HaAgent::on_broadcast(const NodeId& master, std::uint64_t epoch, Time now, AgentOutput& out) {
  begin_input(now, out);
  bool ok = epoch >= epoch_seen_;
  if (!ok) {
    ++impl_->refused_broadcasts;
    out.notes.push_back(fmt::format("refused broadcast from {} for epoch {}: epoch {} already seen", master,
                                    epoch, epoch_seen_));
  } else {
    epoch_seen_ = epoch;
    // Cannot happen while our lease runs (the designation waited for it),
    // but never keep acting beside a newer master.
    if (state_ == AgentState::master && epoch > impl_->my_epoch)
      stop_acting(event::demoted, fmt::format("{} broadcast epoch {}", master, epoch), now, out);
  }
  end_input(now, out);
  return ok;
}

void HaAgent::on_broadcast_ack(const NodeId& from, std::uint64_t epoch, Time now, AgentOutput& out) {
  begin_input(now, out);
  if (state_ == AgentState::broadcasting && epoch == impl_->run.epoch && config_.topology.contains(from))
    impl_->run.acks.insert(from);
  end_input(now, out);
}

void HaAgent::tick(Time now, AgentOutput& out) {
  expire_cas(now, out);
  begin_input(now, out);
  end_input(now, out);
}

// --- bookkeeping ---------------------------------------------------------------

void HaAgent::begin_input(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  for (auto& n : im.queued_notes) out.notes.push_back(std::move(n));
  im.queued_notes.clear();
  // Stop acting the moment the lease runs out, whatever the input is.
  if (state_ == AgentState::master && !lease_.held(now))
    stop_acting(event::lease_lost,
                fmt::format("no renewal committed within the lease ({}ms)", to_ms(config_.failure_timeout)), now,
                out);
}

void HaAgent::end_input(Time now, AgentOutput& out) {
  evaluate(now, out);
#ifndef NDEBUG
  std::string broken = check_invariants(now);
  if (!broken.empty()) {
    std::fprintf(stderr, "rolegrid agent %s (%s): invariant broken: %s\n", config_.self.c_str(),
                 to_string(state_), broken.c_str());
    std::abort();
  }
#endif
}

void HaAgent::expire_cas(Time now, AgentOutput& out) {
  std::vector<std::pair<std::uint64_t, Time>> stale;
  for (const auto& [id, p] : impl_->pending)
    if (now - p.issued >= 4 * config_.failure_timeout) stale.emplace_back(id, p.issued);
  for (const auto& [id, issued] : stale) {
    out.notes.push_back(fmt::format("compare-and-set {} got no answer; giving up", id));
    on_cas_done(id, grid::CasOutcome::no_quorum, std::nullopt, issued, now, out);
  }
}

grid::CasMode lease_mode(CasOp op) {
  switch (op) {
    case CasOp::designate:
    case CasOp::claim: return grid::CasMode::takeover;
    case CasOp::establish:
    case CasOp::resume:
    case CasOp::renew: return grid::CasMode::holds_lease;
    default: return grid::CasMode::plain;
  }
}

std::uint64_t HaAgent::issue(const std::string& purpose, CasOp op, Change change, Time now, AgentOutput& out,
                             bool role_slot) {
  auto saw = std::make_shared<std::optional<std::optional<RoleTable>>>();
  auto made = std::make_shared<std::vector<RoleTable>>();
  CasRequest req;
  req.purpose = purpose;
  req.mode = lease_mode(op);
  // Captures values only: the shell may run it after we are gone.
  // Idempotent: a current value that is one we made (an earlier attempt,
  // accepted by a few and surfacing now) is committed as it is, which is how
  // a CASPaxos writer finishes its own write instead of refusing it.
  req.change = [saw, made, change = std::move(change)](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
    *saw = cur;
    if (cur && std::any_of(made->begin(), made->end(), [&](const RoleTable& m) { return descends(*cur, m); }))
      return cur;
    auto next = change(cur);
    if (next && made->size() < 64) made->push_back(*next);
    return next;
  };
  return submit(std::move(req), op, now, out, role_slot, std::move(saw), std::move(made));
}

std::uint64_t HaAgent::issue_raw(const std::string& purpose, CasOp op, const std::string& key,
                                 decltype(CasRequest::raw) change, Time now, AgentOutput& out, bool role_slot) {
  CasRequest req;
  req.purpose = purpose;
  req.key = key;
  req.raw = std::move(change);
  // The reservation is what the nodes race for when a master fails.
  req.mode = grid::CasMode::race;
  return submit(std::move(req), op, now, out, role_slot, std::make_shared<std::optional<std::optional<RoleTable>>>(),
                std::make_shared<std::vector<RoleTable>>());
}

// Numbers the request, remembers it as pending (and in the role slot) and
// hands it to the shell.
std::uint64_t HaAgent::submit(CasRequest req, CasOp op, Time now, AgentOutput& out, bool role_slot,
                              std::shared_ptr<std::optional<std::optional<RoleTable>>> saw,
                              std::shared_ptr<std::vector<RoleTable>> made) {
  Impl& im = *impl_;
  std::uint64_t id = im.next_cas_id++;
  req.id = id;
  im.pending[id] = PendingCas{req.purpose, op, now, table_, std::move(saw), std::move(made), std::nullopt, Time{}, std::nullopt};
  if (role_slot) im.role_cas = id;
  out.cas.push_back(std::move(req));
  return id;
}

// When the master entry `m` last moved, as far as we can tell: now, unless
// the value came from a read's write-back whose acceptors held its lease
// only `left` more. Its holder wrote it at least (lease - left) ago: an
// acceptor's clock starts after the write began. Counting from our own
// sight instead, a node that learned the entry late (an old master back
// from a cut, finding the new one) judged that master's next failure up to
// a lease late (soak rounds at 1.25 and 1.27 s, bound 1.11 s).
// Not for a holder whose process we first heard less than a lease ago: its
// acceptor restarted the value's lease clock when it loaded its state, so
// the hint dates its earlier life's last renewal to that load. Backdated
// so, a restarted master's entry, written back by its first read, looked
// moved since the restart and lost FIG. 3's longer wait (review).
Time HaAgent::moved_at(const std::optional<MasterEntry>& m, std::optional<std::int64_t> left, Time now) const {
  if (!m || !left || m->lease_ms <= 0) return now;
  Duration lease = milliseconds(m->lease_ms);
  auto it = members_.find(m->node);
  if (it != members_.end() && it->second.alive && it->second.alive_since > now - lease) return now;
  return now - milliseconds(std::clamp<std::int64_t>(m->lease_ms - *left, 0, m->lease_ms));
}

void HaAgent::set_table(const std::optional<RoleTable>& table, Time now, std::optional<std::int64_t> lease_left_ms) {
  Impl& im = *impl_;
  im.have_table = true;
  std::optional<MasterEntry> m;
  if (table) {
    epoch_seen_ = std::max(epoch_seen_, table->epoch);
    m = table->master;
    if (m) {
      epoch_seen_ = std::max(epoch_seen_, m->epoch);
      im.last_seen_master = m->node;
    }
  }
  if (m != im.observed) {  // "renewed" means this entry moved, as seen here
    Time moved = moved_at(m, lease_left_ms, now);
    if (m && im.observed) im.entry_moved_at = moved;  // not our first sight of it
    im.observed = m;
    im.observed_since = moved;
    if (im.read_ahead && !(m && same_entry(*m, *im.read_ahead) && m->renewal < im.read_ahead->renewal))
      im.read_ahead.reset();  // our copy caught up, or the entry moved on
  }
  if (table_ && table_->maintenance && !(table && table->maintenance)) im.maintenance_off_at = now;
  table_ = table;
}

bool HaAgent::alive(const NodeId& id) const {
  auto it = members_.find(id);
  return it != members_.end() && it->second.alive;
}

bool HaAgent::heard(const NodeId& id) const {
  auto it = members_.find(id);
  return it != members_.end() && it->second.alive && !it->second.silent;
}

bool HaAgent::sees_majority() const {
  std::size_t n = 0;
  for (const auto& id : config_.topology.members())
    if (id == config_.self || alive(id)) ++n;
  return n >= config_.topology.quorum();
}

bool HaAgent::automatic_promotion() const {
  if (config_.witness) return false;
  if (config_.topology.size() != 2) return true;
  for (const auto& id : config_.topology.members()) {
    if (id == config_.self) continue;
    auto it = members_.find(id);
    return it != members_.end() && it->second.witness;
  }
  return false;
}

bool HaAgent::eligible_self() const {
  return impl_->ready && !impl_->shutting_down && config_.topology.contains(config_.self) &&
         automatic_promotion();
}

bool HaAgent::names_self_replica() const {
  return table_ && table_->replica && table_->replica->node == config_.self;
}

Role HaAgent::role() const { return impl_->role; }
bool HaAgent::acting_master(Time now) const { return state_ == AgentState::master && lease_.held(now); }
std::uint64_t HaAgent::master_epoch() const { return impl_->my_epoch; }
std::uint64_t HaAgent::refused_broadcasts() const { return impl_->refused_broadcasts; }

// --- states and roles ------------------------------------------------------------

namespace {

// The state changes the protocol makes: follow the table (data, replica),
// a failover (preparing, designating, broadcasting, establishing, master),
// a claim or a switchover target (straight to designating or broadcasting),
// FIG. 3 (a restored master resumes or demotes), and stopping as master.
bool legal(AgentState from, AgentState to) {
  using S = AgentState;
  auto any_of = [to](std::initializer_list<S> l) { return std::find(l.begin(), l.end(), to) != l.end(); };
  switch (from) {
    case S::starting: return any_of({S::witness, S::data, S::replica, S::designating, S::broadcasting, S::master});
    case S::data:
    case S::replica:
      return any_of({S::data, S::replica, S::preparing, S::designating, S::broadcasting, S::master});
    case S::preparing: return any_of({S::designating, S::data, S::replica});
    case S::designating: return any_of({S::designating, S::broadcasting, S::data, S::replica});
    case S::broadcasting: return any_of({S::establishing, S::data, S::replica});
    case S::establishing: return any_of({S::establishing, S::master, S::data, S::replica});
    case S::master: return to == S::replica;
    case S::witness: return false;
  }
  return false;
}

// The agent state each stage of a running failover belongs to.
std::optional<AgentState> state_for(RunStage s) {
  switch (s) {
    case RunStage::idle: return std::nullopt;
    case RunStage::confirming:
    case RunStage::confirm_wait:
    case RunStage::reserving:
    case RunStage::prepare_hook: return AgentState::preparing;
    case RunStage::designating: return AgentState::designating;
    case RunStage::broadcasting:
    case RunStage::handing_back: return AgentState::broadcasting;
    case RunStage::establishing: return AgentState::establishing;
  }
  return std::nullopt;
}

}  // namespace

void HaAgent::enter(AgentState to) {
  if (!legal(state_, to) && impl_->broken.empty())
    impl_->broken = fmt::format("invalid state change {} -> {}", to_string(state_), to_string(to));
  state_ = to;
}

void HaAgent::run_to(RunStage to) {
  Impl& im = *impl_;
  RunStage from = im.run.stage();
  if (!im.run.advance(to) && im.broken.empty())
    im.broken = fmt::format("invalid failover run change {} -> {}", to_string(from), to_string(to));
  if (auto state = state_for(to); state && *state != state_) enter(*state);
}

void HaAgent::become(Role to, const std::string& name, const std::string& reason, std::uint64_t epoch,
                     const NodeId& prev_master, AgentOutput& out) {
  Impl& im = *impl_;
  Role from = (!im.reported && im.previous_role) ? *im.previous_role : im.role;
  bool changed = !im.reported || to != im.role;
  if (to == Role::master) {
    // A master's epoch is at least every epoch seen, and above every epoch
    // it acted at before unless it resumes that very entry.
    if (epoch < epoch_seen_ || epoch < im.last_master_epoch)
      im.broken = fmt::format("became master at epoch {} after seeing {} (last acted at {})", epoch, epoch_seen_,
                              im.last_master_epoch);
    im.last_master_epoch = epoch;
    im.life_master_epoch = epoch;
  }
  out.changes.push_back(RoleChange{from, to, epoch, name, reason});
  im.role = to;
  im.reported = true;
  if (changed && to != Role::witness) run_hook(hook_for(to), to, epoch, prev_master, out);
}

void HaAgent::report(const std::string& name, const std::string& reason, std::uint64_t epoch, AgentOutput& out) {
  out.changes.push_back(RoleChange{impl_->role, impl_->role, epoch, name, reason});
}

void HaAgent::run_hook(const std::string& name, Role role, std::uint64_t epoch, const NodeId& prev_master,
                       AgentOutput& out) {
  // prepare is bounded by failover_timeout; every other hook by the
  // shell's --hook-timeout (limit 0).
  out.hooks.push_back(HookRun{name, role, epoch, prev_master, name == hook::prepare ? config_.failover_timeout : Duration{}});
  impl_->last_hook_role = role;
  if (name == hook::prepare) ++impl_->prepares_emitted;
}

// Data or replica, as the table says.
void HaAgent::settle(Time, AgentOutput& out, const std::string& reason) {
  Impl& im = *impl_;
  Role want = names_self_replica() ? Role::replica : Role::data;
  enter(want == Role::replica ? AgentState::replica : AgentState::data);
  if (im.reported && im.role == want) return;
  std::uint64_t epoch = table_ ? table_->epoch : 0;
  NodeId master = table_ && table_->master ? table_->master->node : NodeId{};
  std::string why = reason.empty() && table_ ? table_->reason : reason;
  become(want, want == Role::replica ? event::replica : event::data, why, epoch, master, out);
}

// Level-triggered: decides from the table, the view and the clock what to
// do next. Runs a few passes so one input can carry several steps (settle,
// then detect).
void HaAgent::evaluate(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  for (int pass = 0; pass < 4; ++pass) {
    auto before = std::make_tuple(state_, im.role_cas, im.run.running(), im.recovering, im.need_read, im.role);
    if (state_ == AgentState::starting && !im.recovering) {
      if (!im.ready || !im.have_table) return;
      if (config_.witness) {
        enter(AgentState::witness);
        become(Role::witness, event::witness, "started as a witness", epoch_seen_, {}, out);
        return;
      }
      bool named = table_ && table_->master && table_->master->node == config_.self;
      if (named || im.previous_role == Role::master) {
        im.recovering = true;  // FIG. 3: read, then demote, resume or claim
        // A table naming us established needs no read first: resuming is a
        // compare-and-set from exactly that entry, which fails if our copy
        // is stale (then we read). (Our reads are plain writes: they no
        // longer restart our earlier process's lease at the acceptors, which
        // held our own resume at a new epoch off for a whole lease.)
        im.need_read = !(named && table_->master->phase == Phase::established);
        im.next_read = now;
      } else {
        settle(now, out, "started");
      }
    }
    if (im.shutting_down) {
      if (state_ == AgentState::broadcasting && !im.role_cas) vacate(now, out);
      return;
    }
    switch (state_) {
      case AgentState::witness: return;
      case AgentState::master: master_tasks(now, out); break;
      case AgentState::preparing: check_prepare(now, out); break;
      case AgentState::designating:
      case AgentState::establishing: retry_designate(now, out); break;
      case AgentState::broadcasting: check_broadcast(now, out); break;
      default: idle(now, out);
    }
    if (before == std::make_tuple(state_, im.role_cas, im.run.running(), im.recovering, im.need_read, im.role)) return;
  }
}

// Not master and not in a failover: read, resume, follow, detect, claim.
void HaAgent::idle(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  if (im.role_cas) return;
  // A switchover of ours is between its release and its handover (waiting
  // for the step-down hook): the table still names us, but not to resume.
  if (im.switch_to) return;
  if (im.need_read) {
    if (now >= im.next_read) {
      im.next_read = now + config_.heartbeat_interval;
      issue("read", CasOp::read, [](const std::optional<RoleTable>& cur) { return cur; }, now, out);
    }
    return;
  }
  if (table_ && table_->master && table_->master->node == config_.self) {
    const MasterEntry& m = *table_->master;
    if (m.phase == Phase::established) {
      if (now >= im.resume_retry_at) resume(m, now, out);
    } else if (im.abandoned_epoch == m.epoch) {
      im.my_epoch = m.epoch;
      vacate(now, out);
    } else {
      start_target(now, out);
    }
    return;
  }
  if (im.recovering) {
    recover(now, out);
    return;
  }
  if (state_ == AgentState::starting) return;
  Role want = names_self_replica() ? Role::replica : Role::data;
  if (want != im.role || (state_ != AgentState::replica && state_ != AgentState::data)) settle(now, out, "");
  if ((state_ == AgentState::replica || state_ == AgentState::data) && failure_detected(now)) {
    start_failover(now, out);
    return;
  }
  // A designation of a live node that does not move on: its target may have
  // missed the commit (pushes can be lost). A read commits the table again
  // and so pushes it to every copy once more. The replica (after a
  // switchover, the old master) asks every heartbeat, others more rarely.
  if (table_ && table_->master && table_->master->phase == Phase::designated &&
      table_->master->node != config_.self && alive(table_->master->node) &&
      now - im.observed_since >= config_.broadcast_timeout + config_.heartbeat_interval && now >= im.next_read) {
    im.next_read = now + (names_self_replica() ? config_.heartbeat_interval : config_.failure_timeout);
    issue("read", CasOp::read, [](const std::optional<RoleTable>& cur) { return cur; }, now, out);
    return;
  }
  maybe_claim(now, out);
}

// --- invariants ------------------------------------------------------------------

std::string HaAgent::check_invariants(Time now) const {
  const Impl& im = *impl_;
  const NodeId& self = config_.self;
  if (!im.broken.empty()) return im.broken;
  if (state_ == AgentState::master) {
    if (im.role != Role::master) return "state master but role " + std::string(to_string(im.role));
    const auto& m = table_ ? table_->master : std::nullopt;
    if (!m || m->node != self || m->epoch != im.my_epoch || m->phase != Phase::established)
      return fmt::format("master at epoch {} without an established entry for itself in the table", im.my_epoch);
    if (lease_.bound() > now + config_.failure_timeout) return "lease bound more than one lease ahead";
  }
  if (im.role == Role::master && state_ != AgentState::master) return "role master outside state master";
  if (im.last_hook_role && *im.last_hook_role != im.role)
    return fmt::format("last hook ran for {} but the role is {}", to_string(*im.last_hook_role), to_string(im.role));
  if (table_ && epoch_seen_ < table_->epoch) return "epoch seen below the table's";
  if (epoch_seen_ < im.my_epoch) return "epoch seen below our own";
  if (table_ && table_->master && table_->master->epoch != table_->epoch)
    return fmt::format("table names a master at epoch {} but its epoch is {}", table_->master->epoch, table_->epoch);
  if (config_.witness && state_ != AgentState::starting && (im.role != Role::witness || im.run.running()))
    return "a witness took a role";
  bool running = state_ == AgentState::preparing || state_ == AgentState::designating ||
                 state_ == AgentState::broadcasting || state_ == AgentState::establishing;
  const RunStage stage = im.run.stage();
  if (running != im.run.running() || (running && state_for(stage) != state_))
    return fmt::format("agent state {} and failover run stage {} disagree", to_string(state_), to_string(stage));
  bool before_prepare = stage == RunStage::confirming || stage == RunStage::confirm_wait || stage == RunStage::reserving;
  if (before_prepare && im.run.owes_abort) return fmt::format("{}: an abort owed before prepare ran", to_string(stage));
  if (stage == RunStage::prepare_hook && !im.run.owes_abort) return "prepare runs but no abort is owed";
  if ((stage == RunStage::confirm_wait) != (im.run.confirm_again != Time{}))
    return "a confirm due again outside confirm-wait";
  if ((stage == RunStage::reserving || stage == RunStage::confirming) && !im.pending.contains(im.role_cas))
    return fmt::format("{} without its compare-and-set in flight", to_string(stage));
  if (im.role_cas && !im.pending.contains(im.role_cas)) return "role compare-and-set lost";
  return {};
}

}  // namespace rg::agent
