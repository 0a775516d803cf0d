// HaAgent, the way to mastership (FIG. 2, claims 2-5 of the patent):
//   detect     the master's entry has not moved for failure_timeout (and no
//              maintenance, no backoff), and the master is not alive, or
//   confirm    it looks alive (it may not reach a majority): a quorum read
//              that writes nothing must show the entry stopped too;
//   reserve    CAS of the failover reservation (kFailoverKey) for exactly
//              that entry: one `prepare` at a time, and never without a
//              majority; refused means another node holds it: yield;
//   prepare    the `prepare` hook; aborted if the master comes back (claim 5);
//   re-check   the master restored meanwhile? then stay replica (claim 2);
//   designate  CAS from exactly the entry seen failing to {self, epoch+1,
//              designated}; refused means someone else acted: stay replica;
//   broadcast  tell every member, count acknowledgements; hand the role back
//              if the old master returns first (claim 3), vacate it if no
//              quorum acknowledges in time (claim 4);
//   establish  CAS to established with a lease; then act as master.
// The claim of a vacant role and a switchover target's promotion take the
// same path from designate (claim) or broadcast (target) on, without
// `prepare` and without a hand-back.
#include <algorithm>

#include <fmt/format.h>

#include "agent/events.h"
#include "agent/ha_agent.h"
#include "agent/ha_agent_state.h"

namespace rg::agent {

namespace {

// From exactly `from` (nullopt: a vacant role) to {self, epoch+1, designated}.
// A designated master holds no lease, so it can still be handed back or
// vacated, and it clears the replica slot (the replica is the one moving up).
decltype(CasRequest::change) designate_change(const NodeId& self, std::optional<MasterEntry> from, bool clear_replica,
                                  const std::string& reason) {
  return [self, from, clear_replica, reason](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
    RoleTable t = cur.value_or(RoleTable{});
    // Maintenance also holds in the register itself: our copy may have
    // missed it being switched on (a cut link that hides commits from us).
    if (t.master != from || t.maintenance) return std::nullopt;
    ++t.epoch;
    t.master = MasterEntry{self, t.epoch, Phase::designated, 0, 0};
    if (clear_replica || (t.replica && t.replica->node == self)) t.replica.reset();
    t.reason = reason;
    return t;
  };
}

// Reserves the failover of `failing` for `self`, unless another node holds
// it for the same master entry (node and epoch): then nothing is written and
// `held_by` tells who. `stale`: exactly the value to take over, one we saw
// unchanged for longer than its holder's prepare may run.
decltype(CasRequest::raw) reserve_change(const FailoverReservation& mine, std::optional<FailoverReservation> stale,
                                         std::shared_ptr<std::optional<FailoverReservation>> held_by) {
  return [mine, stale, held_by](const std::optional<grid::RegValue>& cur) -> std::optional<grid::RegValue> {
    std::optional<FailoverReservation> r;
    if (cur) r = reservation_from_register(*cur);
    bool same_entry = r && r->failing.node == mine.failing.node && r->failing.epoch == mine.failing.epoch;
    // One for a newer epoch means our copy of the table is behind: never
    // overwrite it (someone fails over a master we have not even seen).
    bool newer = r && r->failing.epoch > mine.failing.epoch;
    if ((same_entry || newer) && !r->candidate.empty() && r->candidate != mine.candidate && r != stale) {
      *held_by = r;
      return std::nullopt;
    }
    *held_by = std::nullopt;
    return to_register(mine);
  };
}

MasterEntry designated_entry(const NodeId& self, std::uint64_t epoch) {
  return MasterEntry{self, epoch, Phase::designated, 0, 0};
}

// The step a run aborted before designating reports. A run waiting to
// confirm again never ran `prepare`, so it reports the confirm step.
const char* preparing_step_name(RunStage s) {
  switch (s) {
    case RunStage::confirming:
    case RunStage::confirm_wait: return "confirm";
    case RunStage::reserving: return "reserve";
    default: return "prepare";
  }
}

}  // namespace

// --- detect and prepare -----------------------------------------------------------------

// The entry detection judges: our copy's, or a later renewal of it that a
// confirm read found (Impl::read_ahead), with when it was first seen and
// when it counts as failed if it stays the same. After a read found a later
// renewal: read_ahead_wait from then.
HaAgent::Judged HaAgent::judged_entry() const {
  const Impl& im = *impl_;
  const MasterEntry& m = *table_->master;
  if (im.read_ahead && same_entry(*im.read_ahead, m) && im.read_ahead->renewal > m.renewal)
    return {*im.read_ahead, im.read_ahead_since, im.read_ahead_since + im.read_ahead_wait};
  return {m, im.observed_since, im.observed_since + entry_wait(m.node)};
}

// How long an entry may stand still. A heard master whose entry has not
// moved since its current process began is in FIG. 3 (restarted): it
// resumes at a new epoch only once its earlier life's lease has run out at
// the acceptors (its first read writes that value back: acceptors that
// lacked it hold it as long as those that had it). Judged one failure
// timeout after the entry last moved, the others took over in the same
// instant as it resumed (a full cluster restart lost its master to that
// race); half a timeout more lets it resume first. Once we saw the entry
// move (a renewal, or the resume itself) after that process began, it
// holds a lease of its own: the normal rule (a master deaf right after its
// resume was judged half a timeout late). Our own first sight of the entry
// is no move: after a full restart it comes a second after the master was
// heard, and counting it as one cost a cluster its master (an integration
// test).
Duration HaAgent::entry_wait(const NodeId& master) const {
  auto it = members_.find(master);
  bool restarting = it != members_.end() && heard(master) && impl_->entry_moved_at <= it->second.alive_since;
  return restarting ? config_.failure_timeout * 3 / 2 : config_.failure_timeout;
}

bool HaAgent::failure_detected(Time now) const {
  if (!table_ || !table_->master) return false;
  const MasterEntry& m = *table_->master;
  if (m.node == config_.self) return false;
  // Claim 1 taken literally: the failure is judged from the grid's data.
  // An established master whose entry has not moved for the failure
  // timeout is failed even if the membership still sees it (paused, cut
  // off from the majority but reaching us, deaf); the run confirms it with
  // a read first. If our copy is current, the master's lease ran from
  // before we saw that entry, so it has stopped acting by then; the read
  // shows whether the copy is current. The membership usually judges a
  // paused or cut off master a probe or two later than this: waiting for
  // it cost a third of a failure timeout. A run judged by the entry alone
  // learns of the master's return from its entry moving (claim 5), and,
  // once the master has been silent or declared failed, from hearing it
  // again too (claims 3 and 5, see on_members).
  if (alive(m.node) && (m.phase != Phase::established || config_.plant_membership_only)) return false;
  if (now < judged_entry().failed_at) return false;
  if (!names_self_replica() && !data_node_turn(now)) return false;
  if (table_->maintenance || !eligible_self()) return false;
  // A node cut off from the majority cannot reserve the failover, and its
  // attempts (ever higher ballots) would only outbid the nodes that can.
  if (!config_.plant_no_reservation && !sees_majority()) return false;
  if (backing_off(now)) return false;
  return true;
}

// A run against this same entry ended less than failover_backoff ago. An
// entry that moved since (a renewal, a read ahead of it) is a new failure:
// a replica whose run the master's return aborted sat out the master's
// next failure for the backoff, and a data node took over 1.35 s late.
bool HaAgent::backing_off(Time now) const {
  const Impl& im = *impl_;
  const MasterEntry& m = judged_entry().entry;
  bool flapping = im.aborted_epoch == m.epoch && im.aborted_runs >= 2;
  bool same = im.attempt_epoch == m.epoch && (m.renewal <= im.attempt_renewal || flapping || config_.plant_backoff_by_epoch);
  return im.has_attempt && same && now < im.attempt_at + config_.failover_backoff;
}

// How long after the read a later renewal it found is judged failed if it
// stays the same: as long as the answering acceptors still hold that
// renewal's lease, stretched by the clock drift bound (their clocks count
// it; its master cannot act longer on it, and they hold any takeover off
// until then anyway); at least half a heartbeat, so that a renewal in
// flight shows; at most one failure timeout, which is also the rule when
// the register gave no hint. No more is needed to spare a live master: one
// that renews at a majority left a renewal at one of the answering
// acceptors at most a heartbeat and a round trip ago, so its lease runs
// nearly the whole failure timeout. A short lease left means that master
// has stopped renewing (a deaf one's last attempt reached the acceptors but
// never committed). Judged a failure timeout after the read, a deaf master
// was replaced after 2.5 failure timeouts; two heartbeats at least, 1.22.
// The replica only: the data nodes, a turn behind it, keep the whole
// failure timeout, or their confirm reads outbid its designation (seen in
// the simulation).
Duration HaAgent::read_ahead_wait(std::optional<std::int64_t> lease_left_ms) const {
  if (!lease_left_ms || !names_self_replica() || config_.plant_read_ahead_full_wait) return config_.failure_timeout;
  const Duration floor = config_.heartbeat_interval / 2;
  Duration left = milliseconds(*lease_left_ms);
  Duration stretched = left + std::chrono::duration_cast<Duration>(left * (2 * config_.drift));
  return std::clamp(stretched, floor, std::max(floor, config_.failure_timeout));
}

// The replica fails over first. A data node steps in a heartbeat plus a
// stagger (longest alive first) after the replica's turn began: when the
// master's entry had not moved for the failure timeout (and maintenance was
// off). While the replica looks alive it waits a heartbeat more, and for the
// membership's verdict on the master too, if there is one (the replica's
// confirm read and its backoffs take time; without it the data nodes beat a
// working replica in the simulation). A replica that cannot reach a majority
// must not block the failover, and the reservation keeps a working
// replica's run the only one. Once the replica is gone too, that verdict
// does not count: waiting for it, a second after the entry stopped, left no
// master for 1.4 failure timeouts when the replica was cut off with the
// master (a chaos soak).
bool HaAgent::data_node_turn(Time now) const {
  const Impl& im = *impl_;
  if (state_ != AgentState::data || table_->master->phase != Phase::established) return false;
  bool replica_alive = table_->replica && alive(table_->replica->node);
  if (config_.plant_no_reservation && replica_alive) return false;  // the old rule: defer to it
  Time turn = judged_entry().failed_at;
  Duration wait = config_.heartbeat_interval + stagger();
  if (replica_alive) {
    if (auto gone = im.unfit_since.find(table_->master->node); gone != im.unfit_since.end())
      turn = std::max(turn, gone->second);
    turn = std::max(turn, im.maintenance_off_at);
    wait += config_.heartbeat_interval;
  }
  return now >= turn + wait;
}

// Claim 5 and claim 2's re-check: the master came back, or its entry moved
// (a renewal beyond the one we fail over from, or another entry). Our copy
// may lag behind the register's entry we fail over from: that is no move.
bool HaAgent::master_restored() const {
  const FailoverRun& r = impl_->run;
  if (r.kind != RunKind::failover || !r.failing) return false;
  if (failing_alive()) return true;
  if (!table_ || !table_->master) return true;
  const MasterEntry& m = *table_->master;
  return m.node != r.failing->node || m.epoch != r.failing->epoch || m.phase != r.failing->phase ||
         m.renewal > r.failing->renewal;
}

Duration HaAgent::stagger() const {
  // Longest alive first; nodes that started within one failure_timeout of
  // each other are equally old and go in member order.
  auto bucket = [&](Time t) { return (t - Time{}) / config_.failure_timeout; };
  auto key = [&](const NodeId& id, Time since_alive) {
    return std::make_pair(bucket(since_alive), config_.topology.index_of(id).value_or(0));
  };
  auto mine = key(config_.self, impl_->started_at);
  std::size_t position = 0;
  for (const auto& [id, s] : members_)
    if (s.alive && s.synced && !s.witness && config_.topology.contains(id) && key(id, s.alive_since) < mine)
      ++position;
  return config_.heartbeat_interval * static_cast<int>(1 + 2 * position);
}

void HaAgent::start_failover(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  const auto [m, since, failed_at] = judged_entry();
  FailoverRun& r = im.run;
  r = FailoverRun{};
  r.kind = RunKind::failover;
  r.failing = m;
  r.by_renewal = heard(m.node);
  r.was_replica = names_self_replica();
  r.started = now;
  r.prev_master = m.node;
  r.reason = fmt::format("master {} (epoch {}) {} and not renewed for {}ms", m.node, m.epoch,
                         r.by_renewal ? "alive" : alive(m.node) ? "silent" : "not alive", to_ms(now - since));
  im.has_attempt = true;
  im.attempt_epoch = m.epoch;
  im.attempt_renewal = m.renewal;
  im.attempt_at = now;
  last_failover_.clear();
  step("detect", since, now, r.reason, out);
  r.step_start = now;
  // A master the membership still counts (heard or silent) may be renewing
  // at a majority while its messages, commits included, do not reach us
  // (one-way loss): confirm, or `prepare` would run against an acting
  // master, again after every backoff. After a kill the read costs a round
  // trip.
  if (alive(m.node)) return confirm(now, out);
  if (config_.plant_no_reservation) return run_prepare(now, out);
  reserve(now, out);
}

// The failing master is heard again (claims 2, 3, 5). A run started
// because its entry stopped while it was still heard judges it by the entry
// alone.
bool HaAgent::failing_alive() const {
  const FailoverRun& r = impl_->run;
  return r.failing && !r.by_renewal && heard(r.failing->node);
}

// Our copy may lag behind the register: a quorum read that writes nothing
// (a change that refuses every value) shows whether the master's entry
// really stopped. An identity write would start its lease afresh at the
// acceptors that held an older entry.
void HaAgent::confirm(Time now, AgentOutput& out) {
  run_to(RunStage::confirming);
  issue("confirm", CasOp::confirm, [](const std::optional<RoleTable>&) -> std::optional<RoleTable> { return std::nullopt; },
        now, out);
}

void HaAgent::on_confirmed(grid::CasOutcome outcome, const std::optional<RoleTable>& value,
                           std::optional<std::int64_t> lease_left_ms, Time now, AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  if (r.stage() != RunStage::confirming) return;  // the run ended meanwhile
  bool read = outcome == grid::CasOutcome::precondition_failed;  // it never writes: this is the read's answer
  const auto& m = value ? value->master : std::nullopt;
  const MasterEntry f = *r.failing;  // a copy: the run ends below
  if (read && m && same_entry(*m, f) && m->renewal <= f.renewal) {
    step("confirm", r.step_start, now, fmt::format("a majority holds renewal {} too", m->renewal), out);
    r.step_start = now;
    if (config_.plant_no_reservation) return run_prepare(now, out);
    return reserve(now, out);
  }
  if (!read && outcome == grid::CasOutcome::no_quorum && sees_majority() &&
      now < r.started + config_.failover_timeout) {
    // A majority is alive: rival ballots (a cut-off master's own reads
    // keep outbidding ours) or lost answers, not a minority. Read again.
    out.notes.push_back("confirm: no quorum while a majority is alive; reading again");
    run_to(RunStage::confirm_wait);
    r.confirm_again = now + config_.heartbeat_interval;
    return;
  }
  std::string why = read ? "the register's master entry moved: our copy was behind"
                         : "no majority reached to confirm the master's failure";
  step("confirm", r.step_start, now, why, out);
  end_failover(event::failover_yielded, why, now, out);
  im.attempt_at = now - config_.failover_backoff + config_.failure_timeout;
  bool moved_again = m && im.read_ahead && same_entry(*m, *im.read_ahead) && m->renewal > im.read_ahead->renewal;
  if (read && m && same_entry(*m, f) && m->renewal > f.renewal && !moved_again && !config_.plant_read_back_moved) {
    // A later renewal of the same entry: judge that one from now on, and do
    // not write it back. It may be a renewal attempt that reached a few
    // acceptors only (its master cut off from the majority); committing it
    // would make every node's copy move and abort a failover under way.
    im.read_ahead = *m;
    im.read_ahead_since = now;
    im.read_ahead_wait = read_ahead_wait(lease_left_ms);
    im.attempt_at = now - config_.failover_backoff + im.read_ahead_wait;
    return;
  }
  // Moved again since the last read: the master renews, but its commits do
  // not reach us (a cut link). Refresh our copy, or it would hide
  // maintenance and replica changes for as long as that lasts.
  im.read_ahead.reset();
  // Someone moved on: refresh our copy. An identity write is harmless to a
  // live master's lease.
  if (read) read_soon(now);
}

// A reservation we yielded to is stale once it has stayed the same for
// longer than its holder's prepare may run (it aborts by then).
void HaAgent::reserve(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  run_to(RunStage::reserving);
  r.held_by = std::make_shared<std::optional<FailoverReservation>>();
  std::optional<FailoverReservation> stale;
  // Its holder aborts prepare by failover-timeout + a heartbeat on its own
  // clock (drift), and its CAS may have committed up to half a failure
  // timeout after we first saw the value.
  Duration holder = config_.failover_timeout + config_.heartbeat_interval;
  Duration stale_after = holder + std::chrono::duration_cast<Duration>(holder * (2 * config_.drift)) +
                         config_.failure_timeout + 2 * config_.heartbeat_interval;
  if (im.yielded_to && now - im.yielded_since >= stale_after) stale = im.yielded_to;
  FailoverReservation mine{config_.self, *r.failing, ++im.reservations};
  r.reservation = mine;
  std::uint64_t id = issue_raw("reserve", CasOp::reserve, kFailoverKey, reserve_change(mine, stale, r.held_by), now, out);
  im.pending[id].reservation = mine;
}

void HaAgent::on_reserved(grid::CasOutcome outcome, const std::optional<FailoverReservation>& sent, Time now,
                          AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  if (r.stage() != RunStage::reserving || r.reservation != sent) {
    // The run ended while its reservation was on the way (the master came
    // back, say). Written, or maybe written (no quorum: a later read may
    // complete it), it would hold the others off until it went stale (6.8 s
    // by default) while we back off: give it back. Refused wrote nothing.
    if (sent && outcome != grid::CasOutcome::precondition_failed)
      release_reservation(*sent, now, out);
    return;
  }
  if (outcome == grid::CasOutcome::committed) {
    step("reserve", r.step_start, now, "ok", out);
    im.yielded_to.reset();
    return run_prepare(now, out);
  }
  bool held = r.held_by && *r.held_by;
  std::string why;
  if (held) {
    const FailoverReservation& h = **r.held_by;
    if (im.yielded_to != h) {
      im.yielded_to = h;
      im.yielded_since = now;
    }
    why = fmt::format("{} holds the failover of {} (epoch {})", h.candidate, h.failing.node, h.failing.epoch);
  } else {
    why = outcome == grid::CasOutcome::no_quorum ? "no majority reached to reserve the failover"
                                                 : "the reservation was not committed";
  }
  step("reserve", r.step_start, now, why, out);
  end_failover(event::failover_yielded, why, now, out);
  // No hook ran, so no failover backoff: a holder is given a failure
  // timeout; a lost race (proposers outbidding each other) is retried after
  // this node's stagger, so that the racers spread out.
  im.attempt_at = now - config_.failover_backoff + (held ? config_.failure_timeout : stagger());
}

void HaAgent::run_prepare(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  run_to(RunStage::prepare_hook);
  r.owes_abort = true;
  run_hook(hook::prepare, r.was_replica ? Role::replica : Role::data, r.failing->epoch, r.failing->node, out);
  r.prepare_index = im.prepares_emitted;
  r.step_start = now;
}

void HaAgent::check_prepare(Time now, AgentOutput& out) {
  FailoverRun& r = impl_->run;
  if (r.stage() == RunStage::confirm_wait && now >= r.confirm_again && !impl_->role_cas) {
    r.confirm_again = Time{};
    confirm(now, out);
  }
  std::string why;
  if (master_restored())
    why = failing_alive() ? fmt::format("master {} restored during prepare", r.failing->node)
                                 : std::string("the master entry changed during prepare");
  else if (table_ && table_->maintenance)
    why = "maintenance switched on";
  else if (r.was_replica && !names_self_replica())
    why = "no longer the replica";
  else if (config_.plant_no_reservation && !r.was_replica && table_ && table_->replica && alive(table_->replica->node))
    why = fmt::format("{} is the replica again", table_->replica->node);  // without a reservation: defer to it
  else if (now >= r.step_start + config_.failover_timeout + config_.heartbeat_interval)
    why = "prepare hook exceeded failover-timeout";
  if (why.empty()) return;
  out.abort_hook = r.owes_abort;  // claim 5: terminate the failover operation
  step(preparing_step_name(r.stage()), r.step_start, now, "aborted: " + why, out);
  end_failover(event::failover_aborted, why, now, out);
}

void HaAgent::prepare_done(int status, Time now, AgentOutput& out) {
  FailoverRun& r = impl_->run;
  if (status != 0) {
    std::string why = fmt::format("prepare hook failed (status {})", status);
    step("prepare", r.step_start, now, why, out);
    end_failover(event::failover_aborted, why, now, out);
    return;
  }
  step("prepare", r.step_start, now, "ok", out);
  // Claim 2: re-check before designating.
  std::string why;
  if (master_restored())
    why = failing_alive() ? fmt::format("master {} restored (re-check)", r.failing->node)
                                 : std::string("the master entry changed (re-check)");
  else if (table_ && table_->maintenance)
    why = "maintenance switched on";
  if (!why.empty()) {
    end_failover(event::failover_aborted, why, now, out);
    return;
  }
  r.step_start = now;
  designate(now, out);
}

void HaAgent::designate(Time now, AgentOutput& out) {
  FailoverRun& r = impl_->run;
  run_to(RunStage::designating);
  track_designation(issue("designate", CasOp::designate,
                        designate_change(config_.self, r.failing, true, "failover: " + r.reason), now, out));
}

// Every value a run's designations proposed (retries and an earlier
// orphan included) counts as ours: one surfacing later is settled by a read
// (see on_cas_done) instead of looking like someone else's change.
void HaAgent::track_designation(std::uint64_t id) {
  Impl& im = *impl_;
  auto it = im.pending.find(id);
  if (it == im.pending.end()) return;
  auto& made = *it->second.made;
  if (im.run.made) made.insert(made.end(), im.run.made->begin(), im.run.made->end());
  if (im.orphan_made) made.insert(made.end(), im.orphan_made->begin(), im.orphan_made->end());
  im.run.made = it->second.made;
}

// --- claims of a vacant role; switchover targets ---------------------------------------

void HaAgent::maybe_claim(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  if (!eligible_self() || now < im.claim_not_before) return;
  std::optional<MasterEntry> from;
  Time since = im.observed_since;
  if (table_ && table_->master) {
    const MasterEntry& m = *table_->master;
    // Only a designated entry of a node that looks gone: it holds no lease.
    if (m.phase != Phase::designated || m.node == config_.self || alive(m.node)) return;
    since += config_.failure_timeout + config_.broadcast_timeout;
    from = m;
  }
  Duration delay{};
  if (!im.recovering && !names_self_replica()) delay = stagger();
  if (now < since + delay) return;

  FailoverRun& r = im.run;
  r = FailoverRun{};
  r.kind = RunKind::claim;
  r.failing = from;
  r.was_replica = names_self_replica();
  r.started = now;
  r.step_start = now;
  r.prev_master = from ? from->node : im.last_seen_master;
  r.reason = from ? fmt::format("designated master {} (epoch {}) not alive", from->node, from->epoch)
                  : std::string("the master role is vacant");
  last_failover_.clear();
  step("detect", since, now, r.reason, out);
  run_to(RunStage::designating);
  track_designation(issue("claim", CasOp::claim, designate_change(config_.self, from, false, "claim: " + r.reason), now, out));
}

// The table designates us and we are not working on it: a switchover's
// target, or our own designation from before a restart.
void HaAgent::start_target(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  const MasterEntry m = *table_->master;
  FailoverRun& r = im.run;
  if (im.orphan_made && std::any_of(im.orphan_made->begin(), im.orphan_made->end(),
                                    [&](const RoleTable& t) { return t.master == m; })) {
    r = im.orphan;  // our own designation surfaced after all: carry on with it
    r.owes_abort = false;  // its abort hook already ran
    r.epoch = m.epoch;
    r.started = now;
    im.orphan_made.reset();
    im.recovering = false;
    out.notes.push_back(fmt::format("our designation at epoch {} was committed after all; carrying on", m.epoch));
    begin_broadcast(now, out);
    return;
  }
  r = FailoverRun{};
  r.kind = RunKind::target;
  r.was_replica = im.role == Role::replica;
  r.started = now;
  r.epoch = m.epoch;
  r.reason = table_->reason.starts_with("switchover") ? std::string("switchover")
                                                      : "resuming our designation: " + table_->reason;
  r.prev_master = table_->replica ? table_->replica->node : im.last_seen_master;
  im.recovering = false;
  last_failover_.clear();
  begin_broadcast(now, out);
}

// --- broadcast, establish, hand back, vacate -----------------------------------------

void HaAgent::begin_broadcast(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  run_to(RunStage::broadcasting);
  im.my_epoch = r.epoch;
  epoch_seen_ = std::max(epoch_seen_, r.epoch);
  r.acks = {config_.self};
  r.broadcast_start = now;
  r.step_start = now;
  r.next_broadcast = now + config_.heartbeat_interval;
  out.broadcasts.push_back(BroadcastOrder{r.epoch, config_.self});
}

void HaAgent::check_broadcast(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  if (im.role_cas) return;
  if (table_ && table_->epoch >= r.epoch && table_->master != designated_entry(config_.self, r.epoch)) {
    if (r.back_made && std::any_of(r.back_made->begin(), r.back_made->end(),
                                   [&](const RoleTable& t) { return table_->master == t.master; })) {
      // Our hand-back went in after all (finished by someone else's read).
      end_failover(event::handed_back, fmt::format("handed back to {}", r.failing->node), now, out);
      return;
    }
    step("broadcast", r.broadcast_start, now, "the table changed", out);
    end_failover(event::failover_aborted, "the table changed during the broadcast", now, out);
    return;
  }
  std::size_t acks = r.acks.size(), quorum = config_.topology.quorum();
  // Claim 3: only an established master can be handed its role back.
  bool restored = r.kind == RunKind::failover && r.failing && r.failing->phase == Phase::established &&
                  failing_alive();
  if (r.stage() == RunStage::handing_back) {  // retrying after no quorum, while the old master stays
    if (now < r.retry_at) return;
    if (restored && now < r.broadcast_start + config_.broadcast_timeout + config_.failure_timeout)
      hand_back(now, out);
    else
      vacate(now, out);
  } else if (restored) {
    step("broadcast", r.broadcast_start, now,
         fmt::format("old master {} restored after {} of {} acknowledgements", r.failing->node, acks, quorum), out);
    run_to(RunStage::handing_back);
    hand_back(now, out);
  } else if (acks >= quorum) {
    step("broadcast", r.broadcast_start, now, fmt::format("{} of {} members acknowledged", acks, config_.topology.size()),
         out);
    establish(now, out);
  } else if (now >= r.broadcast_start + config_.broadcast_timeout) {  // claim 4
    step("broadcast", r.broadcast_start, now, fmt::format("only {} acknowledged, quorum is {}", acks, quorum), out);
    vacate(now, out);
  } else if (now >= r.next_broadcast) {  // the order travels as a datagram: repeat it
    r.next_broadcast = now + config_.heartbeat_interval;
    out.broadcasts.push_back(BroadcastOrder{r.epoch, config_.self});
  }
}

bool HaAgent::our_designation_committed() const {
  const FailoverRun& r = impl_->run;
  if (r.stage() != RunStage::designating || !r.made || !table_ || !table_->master) return false;
  const MasterEntry& m = *table_->master;
  return m.node == config_.self && m.phase == Phase::designated &&
         std::any_of(r.made->begin(), r.made->end(), [&](const RoleTable& t) { return t.master == m; });
}

// After a lease_held or no_quorum answer: designate (or claim) and establish
// are retried every heartbeat within their bounds.
void HaAgent::retry_designate(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  if (im.role_cas || now < r.retry_at) return;
  if (r.stage() == RunStage::establishing) {
    if (now >= r.broadcast_start + config_.broadcast_timeout + config_.failure_timeout)
      vacate(now, out);
    else
      establish(now, out);
    return;
  }
  if (our_designation_committed()) {
    // Between two attempts another node's read committed one of ours.
    r.epoch = table_->master->epoch;
    step("designate", r.step_start, now, fmt::format("designated at epoch {} (committed by a read)", r.epoch), out);
    begin_broadcast(now, out);
  } else if (master_restored()) {
    step("designate", r.step_start, now, "abandoned: the master came back", out);
    end_failover(event::failover_aborted, "the master came back while its lease was still held", now, out);
  } else if (now >= r.started + config_.failover_timeout) {
    step("designate", r.step_start, now, "gave up: the old lease is still held", out);
    end_failover(event::failover_aborted, "the old master's lease was still held after failover-timeout", now, out);
  } else if (r.kind == RunKind::failover) {
    designate(now, out);
  } else {
    track_designation(
        issue("claim", CasOp::claim, designate_change(config_.self, r.failing, false, "claim: " + r.reason), now, out));
  }
}

void HaAgent::establish(Time now, AgentOutput& out) {
  FailoverRun& r = impl_->run;
  if (r.stage() != RunStage::establishing) r.step_start = now;
  run_to(RunStage::establishing);
  issue(
      "establish", CasOp::establish,
      [mine = designated_entry(config_.self, r.epoch),
       lease = to_ms(config_.failure_timeout)](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
        MasterEntry done = mine;
        done.phase = Phase::established;
        done.lease_ms = lease;
        ++done.renewal;
        // An earlier attempt of ours, accepted by a few and then committed
        // by another node's read: finish it as it is (establish counts the
        // lease, so its accepts restart the lease clock at each acceptor).
        // Refusing it left the node held off by its own lease.
        if (cur && cur->master == done) return cur;
        if (!cur || cur->master != mine) return std::nullopt;
        RoleTable t = *cur;
        t.master = done;
        return t;
      },
      now, out);
}

// Claim 3: the old master gets its role back, at our (newer) epoch, with one
// more renewal, so it can take it with a renewal from exactly this entry.
void HaAgent::hand_back(Time now, AgentOutput& out) {
  FailoverRun& r = impl_->run;
  MasterEntry back = *r.failing;
  back.epoch = r.epoch;
  back.phase = Phase::established;
  ++back.renewal;
  std::uint64_t id = issue(
      "hand-back", CasOp::hand_back,
      [self = config_.self, mine = designated_entry(config_.self, r.epoch),
       back](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
        if (!cur || cur->master != mine) return std::nullopt;
        RoleTable t = *cur;
        t.master = back;
        t.replica = ReplicaEntry{self, t.epoch};
        t.reason = fmt::format("hand-back to {}: restored before the broadcast of {} completed", back.node, self);
        return t;
      },
      now, out);
  // Earlier attempts count as ours: one surfacing is committed as it is.
  auto& made = impl_->pending[id].made;
  if (r.back_made) made->insert(made->end(), r.back_made->begin(), r.back_made->end());
  r.back_made = made;
}

// Claim 4 (and any designation of ours we give up): the role becomes vacant
// at the same epoch; a replica that designated itself keeps its slot.
void HaAgent::vacate(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  std::uint64_t epoch = r.running() ? r.epoch : im.my_epoch;
  issue(
      "vacate", CasOp::vacate,
      [self = config_.self, mine = designated_entry(config_.self, epoch),
       keep_replica = r.running() && r.was_replica](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
        if (!cur || cur->master != mine) return std::nullopt;
        RoleTable t = *cur;
        t.master.reset();
        if (keep_replica) t.replica = ReplicaEntry{self, t.epoch};
        t.reason = fmt::format("{} vacated the master role of epoch {}", self, mine.epoch);
        return t;
      },
      now, out);
}

void HaAgent::end_failover(const std::string& name, const std::string& reason, Time now, AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun r = std::move(im.run);
  im.run = FailoverRun{};
  // Back off from the attempt's end if its `prepare` ran; a run that ended
  // before (the master heard again while we confirmed or reserved) ran no
  // hook to repeat, and backing off then left a replica out of the next
  // failover for 2 s.
  if (r.kind == RunKind::failover) im.attempt_at = r.owes_abort ? now : now - config_.failover_backoff;
  if (r.kind == RunKind::failover && r.owes_abort && r.failing) {
    im.aborted_runs = im.aborted_epoch == r.failing->epoch ? im.aborted_runs + 1 : 1;
    im.aborted_epoch = r.failing->epoch;
  }
  std::uint64_t epoch = r.epoch ? r.epoch : (r.failing ? r.failing->epoch : (table_ ? table_->epoch : 0));
  out.notes.push_back(fmt::format("{} {}", name, reason));
  report(name, reason, epoch, out);
  if (r.owes_abort) run_hook(hook::abort, im.role, epoch, r.prev_master, out);  // undo what prepare did
  if (r.owes_abort && r.reservation) release_reservation(*r.reservation, now, out);
  enter(im.role == Role::replica ? AgentState::replica : AgentState::data);
  settle(now, out, reason);
}

// A run that held the reservation and failed gives it back (an empty
// candidate), so the others need not wait for it to go stale; only if it
// is still exactly ours.
void HaAgent::release_reservation(const FailoverReservation& mine, Time now, AgentOutput& out) {
  issue_raw("release-reservation", CasOp::unreserve, kFailoverKey,
            [mine](const std::optional<grid::RegValue>& cur) -> std::optional<grid::RegValue> {
              if (!cur || reservation_from_register(*cur) != mine) return std::nullopt;
              return to_register(FailoverReservation{NodeId{}, mine.failing, mine.attempt});
            },
            now, out, /*role_slot=*/false);
}

void HaAgent::step(const std::string& name, Time start, Time end, const std::string& outcome, AgentOutput& out) {
  FailoverStep s{name, start, end, outcome};
  last_failover_.push_back(s);
  out.steps.push_back(std::move(s));
}

// --- results ---------------------------------------------------------------------------

// The table changed under us: read it before anything else.
void HaAgent::read_soon(Time now) {
  impl_->need_read = true;
  impl_->next_read = now;
}

void HaAgent::on_failover_cas(CasOp op, grid::CasOutcome outcome, const std::optional<RoleTable>& value, Time started,
                              Time now, AgentOutput& out) {
  Impl& im = *impl_;
  if (!im.run.running()) {  // a lone vacate of a designation we had given up
    if (op == CasOp::vacate && outcome == grid::CasOutcome::committed) im.abandoned_epoch = 0;
    if (outcome == grid::CasOutcome::precondition_failed) read_soon(now);
    return;
  }
  switch (op) {
    case CasOp::designate:
    case CasOp::claim: on_designated(op, outcome, value, now, out); break;
    case CasOp::establish: on_established(outcome, started, now, out); break;
    case CasOp::hand_back: on_handed_back(outcome, now, out); break;
    case CasOp::vacate: on_vacated(outcome, now, out); break;
    default: break;
  }
}

// The committed table names an established master other than the one
// this run replaces (a claim replaces none): someone else took the role.
// Its lease is what holds our retries off, and it will not run out, so
// waiting for it (as for a dead master's) only delays the end of the run.
// With an even number of members the refusals of the two lease holders
// are no majority either way, and a claim kept retrying for the whole
// failover timeout (a 4-node start, 1 in 6).
namespace {
bool superseded(const std::optional<RoleTable>& table, const NodeId& self, const FailoverRun& r) {
  if (!table || !table->master || table->master->phase != Phase::established) return false;
  const MasterEntry& m = *table->master;
  if (m.node == self) return false;
  return !r.failing || m.node != r.failing->node || m.epoch != r.failing->epoch;
}
}  // namespace

void HaAgent::on_designated(CasOp op, grid::CasOutcome outcome, const std::optional<RoleTable>& value, Time now,
                            AgentOutput& out) {
  using grid::CasOutcome;
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  const bool taken = superseded(table_, config_.self, r);
  if (outcome == CasOutcome::committed && value && value->master && value->master->node == config_.self) {
    im.orphan_made.reset();
    r.epoch = value->master->epoch;
    step("designate", r.step_start, now, fmt::format("designated at epoch {}", r.epoch), out);
    begin_broadcast(now, out);
  } else if (!taken && (outcome == CasOutcome::lease_held ||
              (outcome == CasOutcome::no_quorum && r.saw_lease_held && now < r.started + config_.failover_timeout))) {
    r.saw_lease_held = true;
    r.retry_at = now + config_.heartbeat_interval;  // the old lease runs out soon
  } else if (!taken && outcome == CasOutcome::no_quorum && sees_majority() &&
             now < r.started + config_.failover_timeout) {
    // We hold the reservation and see a majority alive: no quorum within
    // the operation's timeout was rival ballots (other nodes' reads and
    // reservations) or lost answers, not a minority. Abandoning here left
    // a 5-node cluster without a master in the simulation.
    out.notes.push_back("designate: no quorum while a majority is alive; retrying");
    r.retry_at = now + config_.heartbeat_interval;
  } else if (op == CasOp::designate && outcome == CasOutcome::precondition_failed && value && value->master &&
             value->master->node == r.failing->node && value->master->epoch == r.failing->epoch &&
             value->master->phase == r.failing->phase && !failing_alive() &&
             now < r.started + config_.failover_timeout) {
    // Only our copy was behind (the dead master's last renewal was
    // accepted but never pushed): retry from the register's entry. Not
    // with a read: writing that entry back gives the acceptors that held an
    // older one its remaining lease, and takes a round trip.
    out.notes.push_back(fmt::format("designate: our copy had renewal {} of {}, the register {}; retrying",
                                    r.failing->renewal, r.failing->node, value->master->renewal));
    r.failing = *value->master;
    r.retry_at = now;
    // That renewal's lease may still run at some acceptors: mixed lease
    // and timeout answers come back as no_quorum, which is its edge here.
    r.saw_lease_held = true;
  } else {
    bool minority = outcome == CasOutcome::no_quorum;
    step("designate", r.step_start, now, minority ? "no quorum" : "refused: the table changed", out);
    // Not committed is not "not written": keep what we proposed.
    im.orphan = r.parked();
    im.orphan_made = r.made;
    if (!minority) read_soon(now);
    if (r.kind == RunKind::claim)
      im.claim_not_before = now + (minority ? config_.failover_backoff : 2 * config_.heartbeat_interval);
    end_failover(event::failover_aborted,
                 minority ? "no quorum: a minority side never promotes" : "someone else changed the table first",
                 now, out);
  }
}

void HaAgent::on_established(grid::CasOutcome outcome, Time started, Time now, AgentOutput& out) {
  Impl& im = *impl_;
  FailoverRun& r = im.run;
  bool committed = outcome == grid::CasOutcome::committed;
  if (committed && table_ && table_->master == MasterEntry{config_.self, r.epoch, Phase::established,
                                                           to_ms(config_.failure_timeout), 1}) {
    step("establish", r.step_start, now, "established", out);
    std::string reason = r.reason;
    NodeId prev = r.prev_master;
    std::uint64_t epoch = r.epoch;
    im.run = FailoverRun{};
    start_acting(epoch, started, now);
    become(Role::master, event::promoted, reason, im.my_epoch, prev, out);
  } else if (committed || outcome == grid::CasOutcome::precondition_failed) {
    step("establish", r.step_start, now, "refused: the table changed", out);
    read_soon(now);
    end_failover(event::failover_aborted, "the table changed before establish", now, out);
  } else {
    r.retry_at = now + config_.heartbeat_interval;
  }
}

void HaAgent::on_handed_back(grid::CasOutcome outcome, Time now, AgentOutput& out) {
  FailoverRun& r = impl_->run;
  if (outcome == grid::CasOutcome::committed) {
    end_failover(event::handed_back, fmt::format("handed back to {}", r.failing->node), now, out);
  } else if (outcome == grid::CasOutcome::precondition_failed) {
    read_soon(now);
    end_failover(event::failover_aborted, "the table changed before the hand-back", now, out);
  } else {
    r.retry_at = now + config_.heartbeat_interval;  // check_broadcast retries or vacates
  }
}

void HaAgent::on_vacated(grid::CasOutcome outcome, Time now, AgentOutput& out) {
  Impl& im = *impl_;
  if (outcome == grid::CasOutcome::committed) {
    im.claim_not_before = now + config_.failover_backoff;
    end_failover(event::vacated,
                 fmt::format("fewer than {} members acknowledged epoch {}", config_.topology.quorum(), im.run.epoch),
                 now, out);
    return;
  }
  if (outcome == grid::CasOutcome::precondition_failed) read_soon(now);
  else im.abandoned_epoch = im.run.epoch;  // vacated later, from idle
  end_failover(event::failover_aborted, "could not vacate the designation", now, out);
}

}  // namespace rg::agent
