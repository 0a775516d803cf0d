// HaAgent, the master's side: renewing the lease and stopping the moment it
// runs out, FIG. 3 (a master restored after a failure, a pause, a partition
// or a restart reads the table, then demotes itself, resumes or claims), the
// master's cluster tasks (appointing the replica) and the operator's actions
// (switchover, maintenance, graceful stop).
//
// Safety rests on the lease: a renewal that a majority accepted was accepted
// no earlier than `started`, every acceptor refuses another master until
// the lease has run out on its own clock since it accepted, so acting until
// started + lease * (1 - drift) never overlaps a successor.
#include <algorithm>

#include <fmt/format.h>

#include "agent/events.h"
#include "agent/ha_agent.h"
#include "agent/ha_agent_state.h"

namespace rg::agent {

namespace {

bool is_master(const std::optional<RoleTable>& t, const NodeId& self, std::uint64_t epoch, Phase phase) {
  return t && t->master && t->master->node == self && t->master->epoch == epoch && t->master->phase == phase;
}

}  // namespace

// The one way into acting as master (establish or resume committed).
void HaAgent::start_acting(std::uint64_t epoch, Time started, Time now) {
  Impl& im = *impl_;
  im.my_epoch = epoch;
  lease_.start(started, now);
  enter(AgentState::master);
  im.recovering = false;
  im.demote_reported = false;
  im.need_read = false;
  im.next_appoint = now;
}

void HaAgent::master_tasks(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  if (!lease_.held(now)) {
    stop_acting(event::lease_lost, "no renewal committed within the lease", now, out);
    return;
  }
  if (!is_master(table_, config_.self, im.my_epoch, Phase::established)) {
    std::string who = table_ && table_->master ? fmt::format("{} at epoch {}", table_->master->node, table_->master->epoch)
                                               : std::string("nobody");
    stop_acting(event::demoted, "the table names " + who, now, out);
    return;
  }
  if (im.role_cas) return;
  if (lease_.renewal_due(now)) {
    renew(now, out);
    return;
  }
  if (now >= im.next_appoint) appoint_replica(now, out);
}

// Stops acting at once, then finds out from the table what we are (FIG. 3).
void HaAgent::stop_acting(const std::string& name, const std::string& reason, Time now, AgentOutput& out) {
  Impl& im = *impl_;
  lease_.stop(now);
  enter(AgentState::replica);
  become(Role::replica, name, reason, im.my_epoch, config_.self, out);
  im.recovering = true;
  im.demote_reported = name == event::demoted;
  im.need_read = true;
  im.next_read = now;
}

void HaAgent::renew(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  lease_.renewal_sent(now);
  issue(
      "renew", CasOp::renew,
      [self = config_.self, epoch = im.my_epoch, last = im.last_renewal,
       lease = to_ms(config_.failure_timeout)](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
        if (!is_master(cur, self, epoch, Phase::established)) return std::nullopt;
        RoleTable t = *cur;
        // Never equal to an earlier attempt that reached only a few
        // acceptors: their lease clocks run from that attempt, older than
        // this operation's start, and a reader finding the value there
        // would take the lease as shorter than we count it (its hint,
        // CasResult::value_lease_left_ms, would be short).
        std::uint64_t floor = last->first == epoch ? last->second : 0;
        t.master->renewal = std::max(t.master->renewal, floor) + 1;
        t.master->lease_ms = lease;
        *last = {epoch, t.master->renewal};
        return t;
      },
      now, out);
}

// FIG. 3 after the read, when the table does not name us: a newer master
// demotes us, a designation of someone else is waited for, a vacancy (or a
// dead designated node) is claimed at once.
void HaAgent::recover(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  if (table_ && table_->master) {
    const MasterEntry m = *table_->master;
    if (m.phase == Phase::established) {
      replica_self(m, now, out);
      return;
    }
    maybe_claim(now, out);
    if (im.run.running()) return;
    im.need_read = true;  // wait for it to establish or hand back
    im.next_read = now + config_.heartbeat_interval;
    return;
  }
  if (eligible_self()) {
    maybe_claim(now, out);
    if (im.run.running()) return;
  }
  im.recovering = false;
  settle(now, out, "the master role is vacant");
}

// Renews exactly the entry that names us. An entry an earlier process of
// this node held (it restarted) is not taken over as it is: the new process
// acts at a new epoch, so an epoch never names two master processes and
// stays a fencing token across restarts, full-cluster ones included. The
// acceptors hold the new epoch off until the earlier process's lease ran out.
// A hand-back names an epoch nobody acted at, and is taken as it is; taking
// it rewrites the table's reason, so a later restart does not take the same
// entry for a hand-back again (and an epoch this node is known to have acted
// at never is one).
void HaAgent::resume(const MasterEntry& entry, Time now, AgentOutput& out) {
  Impl& im = *impl_;
  using Resume = Impl::Resume;
  const auto& restart = im.restart_value;
  bool handed = table_ && table_->reason.starts_with("hand-back") && entry.epoch > im.last_master_epoch;
  bool ours = *restart && (*restart)->master == entry;
  im.resume_kind = handed                                                  ? Resume::hand_back
                   : entry.epoch == im.life_master_epoch || ours           ? Resume::renew
                                                                           : Resume::new_epoch;
  issue(
      "renew", CasOp::resume,
      [entry, kind = im.resume_kind, restart, self = config_.self,
       lease = to_ms(config_.failure_timeout)](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
        // An earlier attempt of ours, accepted by a few (held off by the old
        // lease at the others): finish it instead of refusing it.
        if (cur && *restart && *cur == **restart) return cur;
        if (!cur || cur->master != entry) return std::nullopt;
        RoleTable t = *cur;
        if (kind == Resume::new_epoch) {
          ++t.epoch;
          t.master = MasterEntry{self, t.epoch, Phase::established, lease, 0};
          t.reason = fmt::format("{} restarted as master: takes epoch {} (epoch {} was its earlier process's)",
                                 self, t.epoch, entry.epoch);
          *restart = t;
          return t;
        }
        ++t.master->renewal;
        t.master->lease_ms = lease;
        if (kind == Resume::hand_back) t.reason = fmt::format("{} took the role back: {}", self, cur->reason);
        return t;
      },
      now, out);
}

void HaAgent::replica_self(const MasterEntry& master, Time now, AgentOutput& out) {
  Impl& im = *impl_;
  if (names_self_replica()) {  // already there: nothing to write
    im.recovering = false;
    enter(AgentState::replica);
    if (!im.demote_reported)
      become(Role::replica, event::demoted, fmt::format("{} is master at epoch {}", master.node, master.epoch),
             master.epoch, master.node, out);
    im.demote_reported = false;
    return;
  }
  issue(
      "replica-self", CasOp::replica_self,
      [self = config_.self, master](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
        // The same master at the same epoch, whatever its renewal: a master
        // that renews faster than this round trip would otherwise refuse
        // every attempt, and we would never demote.
        if (!is_master(cur, master.node, master.epoch, Phase::established)) return std::nullopt;
        RoleTable t = *cur;
        t.replica = ReplicaEntry{self, t.epoch};
        t.reason = fmt::format("{} demoted to replica: {} is master at epoch {}", self, master.node, master.epoch);
        return t;
      },
      now, out);
}

// --- the master's cluster tasks ----------------------------------------------------

bool HaAgent::replica_needs_replacing(Time now, std::string& why) const {
  if (!table_->replica) {
    why = "no replica";
    return true;
  }
  const NodeId& r = table_->replica->node;
  if (r == config_.self) {
    why = "the master cannot be its own replica";
    return true;
  }
  if (!config_.topology.contains(r)) {
    why = r + " is not a member";
    return true;
  }
  auto it = members_.find(r);
  if (it != members_.end() && it->second.witness) {
    why = r + " is a witness";
    return true;
  }
  auto u = impl_->unfit_since.find(r);
  if (u != impl_->unfit_since.end() && now - u->second >= config_.eviction_delay) {
    why = fmt::format("{} not alive and synced for {}ms", r, to_ms(now - u->second));
    return true;
  }
  return false;
}

std::optional<NodeId> HaAgent::choose_replica() const {
  auto fit = [&](const NodeId& id) {
    auto it = members_.find(id);
    // Not a silent one: a master just replaced by its stopped entry may
    // not be declared failed yet, and would be appointed its own replica.
    return id != config_.self && config_.topology.contains(id) && it != members_.end() && it->second.alive &&
           !it->second.silent && it->second.synced && !it->second.witness;
  };
  for (const auto& p : config_.preferred_replicas)
    if (fit(p)) return p;
  std::optional<NodeId> best;
  Time best_since{};
  for (const auto& [id, s] : members_) {  // ordered by id: ties go to the smallest
    if (!fit(id)) continue;
    if (!best || s.alive_since < best_since) {
      best = id;
      best_since = s.alive_since;
    }
  }
  return best;
}

void HaAgent::appoint_replica(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  im.next_appoint = now + config_.heartbeat_interval;
  std::string why;
  if (!table_ || !replica_needs_replacing(now, why)) return;
  auto pick = choose_replica();
  if (!pick) {
    std::string note = "no member can be appointed replica (" + why + ")";
    if (note != im.appoint_note) out.notes.push_back(note);
    im.appoint_note = note;
    return;
  }
  im.appoint_note.clear();
  if (table_->replica && table_->replica->node == *pick) return;
  issue(
      "appoint-replica", CasOp::appoint,
      [self = config_.self, epoch = im.my_epoch, pick = *pick, why](const std::optional<RoleTable>& cur)
          -> std::optional<RoleTable> {
        if (!is_master(cur, self, epoch, Phase::established)) return std::nullopt;
        RoleTable t = *cur;
        t.replica = ReplicaEntry{pick, epoch};
        t.reason = fmt::format("{} appointed replica by {}: {}", pick, self, why);
        return t;
      },
      now, out);
}

// --- results -------------------------------------------------------------------------

void HaAgent::on_master_cas(CasOp op, grid::CasOutcome outcome, const std::optional<RoleTable>& value, Time started,
                            Time now, AgentOutput& out) {
  Impl& im = *impl_;
  using grid::CasOutcome;
  bool committed = outcome == CasOutcome::committed;
  switch (op) {
    case CasOp::read:
      if (committed || (outcome == CasOutcome::precondition_failed && !value))
        im.need_read = false;
      else
        im.next_read = now + config_.heartbeat_interval;
      break;
    case CasOp::renew:
      if (state_ != AgentState::master) break;
      if (committed && is_master(table_, config_.self, im.my_epoch, Phase::established))
        lease_.renewed(started, now);
      else if (outcome == CasOutcome::precondition_failed)
        stop_acting(event::demoted,
                    value && value->master ? fmt::format("renewal refused: {} is master at epoch {}",
                                                         value->master->node, value->master->epoch)
                                           : std::string("renewal refused: the master role is vacant"),
                    now, out);
      break;
    case CasOp::resume: on_resumed(outcome, started, now, out); break;
    case CasOp::replica_self: on_replica_self(outcome, value, now, out); break;
    case CasOp::appoint:
      break;  // the table shows the outcome; the next round retries
    case CasOp::release:
    case CasOp::handover: on_switchover_step(op, outcome, now, out); break;
    case CasOp::maintenance:
      out.notes.push_back(committed ? fmt::format("maintenance {}", value && value->maintenance ? "on" : "off")
                                    : "maintenance change not committed");
      break;
    default:
      break;
  }
}

void HaAgent::on_resumed(grid::CasOutcome outcome, Time started, Time now, AgentOutput& out) {
  Impl& im = *impl_;
  bool committed = outcome == grid::CasOutcome::committed;
  if (committed && table_ && table_->master && table_->master->node == config_.self &&
      table_->master->phase == Phase::established) {
    bool handed = im.resume_kind == Impl::Resume::hand_back;
    bool restarted = im.resume_kind == Impl::Resume::new_epoch;
    start_acting(table_->master->epoch, started, now);
    become(Role::master, handed ? event::handed_back : event::resumed,
           handed || restarted ? table_->reason : "the table still names this node", im.my_epoch,
           handed && table_->replica ? table_->replica->node : config_.self, out);
  } else if (committed || outcome == grid::CasOutcome::precondition_failed) {
    im.need_read = true;
    im.next_read = now;
  } else {
    im.resume_retry_at = now + config_.heartbeat_interval;
  }
}

void HaAgent::on_replica_self(grid::CasOutcome outcome, const std::optional<RoleTable>& value, Time now,
                              AgentOutput& out) {
  Impl& im = *impl_;
  if (outcome != grid::CasOutcome::committed) {
    im.need_read = true;
    im.next_read = outcome == grid::CasOutcome::precondition_failed ? now : now + config_.heartbeat_interval;
    return;
  }
  im.recovering = false;
  enter(AgentState::replica);
  std::string why = value && value->master ? fmt::format("{} is master at epoch {}", value->master->node,
                                                         value->master->epoch)
                                           : std::string();
  if (!im.demote_reported)
    become(Role::replica, event::demoted, why, value ? value->epoch : epoch_seen_,
           value && value->master ? value->master->node : NodeId{}, out);
  im.demote_reported = false;
}

// A switchover's two steps: release the lease, then hand the role over.
void HaAgent::on_switchover_step(CasOp op, grid::CasOutcome outcome, Time now, AgentOutput& out) {
  Impl& im = *impl_;
  bool committed = outcome == grid::CasOutcome::committed;
  if (op == CasOp::release) {
    if (committed && im.switch_to && !im.stepdown_hook.empty()) {
      im.release_committed = true;  // on_hook_done hands over once the step-down hook is done
      out.notes.push_back(fmt::format("lease released; handing over to {} once the step-down hook is done",
                                      *im.switch_to));
    } else if (committed && im.switch_to) {
      handover(now, out);
    } else if (im.switch_to) {
      out.notes.push_back(fmt::format("switchover to {} failed: release {}", *im.switch_to,
                                      outcome == grid::CasOutcome::precondition_failed ? "refused" : "not committed"));
      im.switch_to.reset();
      im.recovering = true;
      im.need_read = true;
      im.next_read = now;
    } else {
      out.notes.push_back(committed ? "master lease released" : "could not release the master lease");
    }
    return;
  }
  if (!committed) {  // handover
    out.notes.push_back(fmt::format("switchover to {} failed: handover not committed", im.switch_to.value_or("?")));
    im.recovering = true;
    im.need_read = true;
    im.next_read = now;
  }
  im.switch_to.reset();
}

// --- operator actions ----------------------------------------------------------------

std::string HaAgent::switchover(const NodeId& to, Time now, AgentOutput& out, bool early_handover) {
  begin_input(now, out);
  std::string why;
  auto it = members_.find(to);
  if (!acting_master(now)) {
    why = fmt::format("not the master; master is {}",
                      table_ && table_->master ? table_->master->node : std::string("nobody"));
  } else if (!automatic_promotion()) {
    why = "a 2-member topology without a witness never hands the master role over";
  } else if (impl_->shutting_down) {
    why = "shutting down";
  } else if (to == config_.self) {
    why = "already the master";
  } else if (!config_.topology.contains(to)) {
    why = to + " is not a member";
  } else if (it == members_.end() || !it->second.alive) {
    why = to + " is not alive";
  } else if (!it->second.synced) {
    why = to + " has not finished state transfer";
  } else if (it->second.witness) {
    why = to + " is a witness and never takes a role";
  }
  if (!why.empty()) {
    end_input(now, out);
    return why;
  }
  Impl& im = *impl_;
  im.switch_to = to;
  // Stop first, then give the lease up: we never act on a lease we released.
  auto hooks_before = out.hooks.size();
  stop_acting(event::switchover_out, "switchover to " + to, now, out);
  im.stepdown_hook = out.hooks.size() > hooks_before && !early_handover ? out.hooks.back().hook : std::string();
  im.release_committed = false;
  im.recovering = false;
  im.need_read = false;
  issue(
      "release", CasOp::release,
      [self = config_.self, epoch = im.my_epoch, to](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
        if (!is_master(cur, self, epoch, Phase::established)) return std::nullopt;
        RoleTable t = *cur;
        t.master->lease_ms = 0;
        ++t.master->renewal;
        t.reason = fmt::format("{} released the master lease for a switchover to {}", self, to);
        return t;
      },
      now, out);
  end_input(now, out);
  return {};
}

// The lease is released: name the target designated at a new epoch, and us
// its replica. The target broadcasts and establishes itself.
void HaAgent::handover(Time now, AgentOutput& out) {
  Impl& im = *impl_;
  issue(
      "handover", CasOp::handover,
      [self = config_.self, epoch = im.my_epoch, to = *im.switch_to](const std::optional<RoleTable>& cur)
          -> std::optional<RoleTable> {
        if (!is_master(cur, self, epoch, Phase::established) || cur->master->lease_ms != 0) return std::nullopt;
        RoleTable t = *cur;
        ++t.epoch;
        t.master = MasterEntry{to, t.epoch, Phase::designated, 0, 0};
        t.replica = ReplicaEntry{self, t.epoch};
        t.reason = fmt::format("switchover from {} to {}", self, to);
        return t;
      },
      now, out);
}

std::string HaAgent::set_maintenance(bool on, Time now, AgentOutput& out) {
  begin_input(now, out);
  issue(
      "maintenance", CasOp::maintenance,
      [on, self = config_.self](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
        RoleTable t = cur.value_or(RoleTable{});
        t.maintenance = on;
        t.reason = fmt::format("maintenance {} by {}", on ? "on" : "off", self);
        return t;
      },
      now, out, /*role_slot=*/false);
  end_input(now, out);
  return {};
}

void HaAgent::on_shutdown(Time now, AgentOutput& out) {
  begin_input(now, out);
  Impl& im = *impl_;
  if (!im.shutting_down) {
    im.shutting_down = true;
    if (state_ == AgentState::master) {
      stop_acting(event::shutdown, "graceful stop", now, out);
      im.recovering = false;
      im.need_read = false;
      issue(
          "release", CasOp::release,
          [self = config_.self, epoch = im.my_epoch](const std::optional<RoleTable>& cur) -> std::optional<RoleTable> {
            if (!is_master(cur, self, epoch, Phase::established)) return std::nullopt;
            RoleTable t = *cur;
            t.master->lease_ms = 0;
            ++t.master->renewal;
            t.reason = fmt::format("{} released the master lease: shutting down", self);
            return t;
          },
          now, out);
    } else if (state_ == AgentState::preparing) {
      out.abort_hook = true;
      step("prepare", im.run.step_start, now, "aborted: shutting down", out);
      end_failover(event::failover_aborted, "shutting down", now, out);
    }
  }
  end_input(now, out);
}

}  // namespace rg::agent
