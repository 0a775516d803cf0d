// Unit tests for agent::HaAgent: one agent driven by hand, with the role
// table register, the member view, hooks and broadcasts played by the test.
// One or more cases per path of the patent (FIG. 2, FIG. 3, claims 1-5) and
// per rule of issue 3; every assertion is on exact outputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/ha_agent.h"

using namespace rg;
using namespace rg::agent;
using namespace std::chrono_literals;
using grid::CasOutcome;

namespace {

constexpr Duration kHb = 100ms;

// One agent, the register it writes to, and what it said last.
struct Rig {
  AgentConfig cfg;
  Time now = Time{} + std::chrono::hours(1);
  std::unique_ptr<HaAgent> a;
  AgentOutput out;
  std::optional<RoleTable> reg;
  std::optional<grid::RegValue> reservations;  // the failover reservation's register
  bool hold_reservations = false;  // leave reservations in `out`, unanswered
  MemberView view;

  explicit Rig(const NodeId& self, std::vector<NodeId> members = {"n1", "n2", "n3"}, bool witness = false) {
    cfg.self = self;
    cfg.topology = Topology(members);
    cfg.witness = witness;
    for (const auto& m : members)
      if (m != self) view[m] = MemberStatus{true, true, false, now, std::nullopt, 0};
    a = std::make_unique<HaAgent>(cfg, now);
  }

  HaAgent& agent() { return *a; }
  void start(std::optional<RoleTable> t) {
    reg = std::move(t);
    out.clear();
    a->on_members(view, now, out);
    a->on_table(reg, now, out);
    a->on_ready(now, out);
    reserve();
  }
  void tick(Duration d = 0ms) {
    now += d;
    out.clear();
    a->tick(now, out);
    reserve();
  }
  void members() {
    out.clear();
    a->on_members(view, now, out);
    reserve();
  }
  void table(const RoleTable& t, std::optional<std::int64_t> lease_left_ms = std::nullopt) {
    reg = t;
    out.clear();
    a->on_table(reg, now, out, lease_left_ms);
    reserve();
  }
  // A failover reserves itself before `prepare`: the rig commits each
  // reservation on its own register at once (refused ones fail), and adds
  // what followed to `out`, so the tests see detect and prepare together.
  void reserve() {
    while (!hold_reservations) {
      // Reservations and their releases: every CAS of the other register.
      auto it = std::find_if(out.cas.begin(), out.cas.end(), [](const CasRequest& c) { return bool(c.raw); });
      if (it == out.cas.end()) return;
      CasRequest c = *it;
      out.cas.erase(it);
      auto v = c.raw(reservations);
      if (v) reservations = v;
      AgentOutput more;
      a->on_cas_done(c.id, v ? CasOutcome::committed : CasOutcome::precondition_failed, std::nullopt, now, now, more);
      for (auto& x : more.cas) out.cas.push_back(std::move(x));
      for (auto& x : more.hooks) out.hooks.push_back(std::move(x));
      for (auto& x : more.broadcasts) out.broadcasts.push_back(std::move(x));
      for (auto& x : more.changes) out.changes.push_back(std::move(x));
      for (auto& x : more.steps) out.steps.push_back(std::move(x));
      for (auto& x : more.notes) out.notes.push_back(std::move(x));
      out.abort_hook = out.abort_hook || more.abort_hook;
    }
  }
  void set_alive(const NodeId& id, bool alive) {
    view[id].alive = alive;
    members();
  }
  // The one compare-and-set the last input asked for.
  CasRequest cas(const std::string& purpose) {
    REQUIRE(out.cas.size() == 1);
    REQUIRE(out.cas[0].purpose == purpose);
    return out.cas[0];
  }
  // Runs it on the register as the shell does: copy first, then the result.
  // `lease_left_ms`: the register's hint on a refused change (how long the
  // acceptors still hold the value's lease).
  void commit(CasRequest c, Duration latency = 0ms, std::optional<std::int64_t> lease_left_ms = std::nullopt) {
    Time started = now;
    now += latency;
    auto v = c.change(reg);
    out.clear();
    if (v) {
      reg = v;
      a->on_table(reg, now, out);
      a->on_cas_done(c.id, CasOutcome::committed, reg, started, now, out);
    } else {
      a->on_cas_done(c.id, CasOutcome::precondition_failed, reg, started, now, out, lease_left_ms);
    }
    reserve();
  }
  void fail(CasRequest c, CasOutcome o) {
    out.clear();
    a->on_cas_done(c.id, o, std::nullopt, now, now, out);
    reserve();
  }
  void hook_done(const std::string& hook, int status) {
    out.clear();
    a->on_hook_done(hook, status, now, out);
    reserve();
  }
  void ack(const NodeId& from, std::uint64_t epoch) {
    out.clear();
    a->on_broadcast_ack(from, epoch, now, out);
    reserve();
  }

  std::vector<std::string> hooks() const {
    std::vector<std::string> v;
    for (const auto& h : out.hooks) v.push_back(h.hook);
    return v;
  }
  std::vector<std::string> events() const {
    std::vector<std::string> v;
    for (const auto& c : out.changes) v.push_back(c.event);
    return v;
  }
  std::vector<std::string> steps() const {
    std::vector<std::string> v;
    for (const auto& s : a->last_failover()) v.push_back(s.step);
    return v;
  }
  // The master's entry, unchanged, is judged failed exactly `wait` from now:
  // not a moment before, then a confirm read, then `prepare` (the rig
  // answers the reservation).
  void confirms_after(Duration wait) {
    tick(wait - std::chrono::milliseconds(1));
    CHECK(out.cas.empty());
    tick(std::chrono::milliseconds(1));
    commit(cas("confirm"));
    CHECK(hooks() == std::vector<std::string>{"prepare"});
  }
  bool noted(const std::string& part) const {
    return std::any_of(out.notes.begin(), out.notes.end(),
                       [&](const std::string& n) { return n.find(part) != std::string::npos; });
  }
};

using Strings = std::vector<std::string>;

RoleTable table_with(const NodeId& master, std::uint64_t epoch, Phase phase, std::uint64_t renewal,
                     std::optional<NodeId> replica) {
  RoleTable t;
  t.epoch = epoch;
  t.master = MasterEntry{master, epoch, phase, phase == Phase::established ? 1000 : 0, renewal};
  if (replica) t.replica = ReplicaEntry{*replica, epoch};
  return t;
}

// Brings rig.a to acting master at epoch 1 through the claim of a fresh
// cluster's vacant role; leaves the first appoint-replica request in `out`.
void make_master(Rig& r) {
  r.start(std::nullopt);
  r.tick(kHb);
  r.commit(r.cas("claim"));
  for (const auto& m : r.cfg.topology.members())  // acknowledgements up to a quorum
    if (m != r.cfg.self && r.out.cas.empty()) r.ack(m, 1);
  r.commit(r.cas("establish"));
  REQUIRE(r.agent().acting_master(r.now));
}

// make_master, then its first replica appointed (committed).
void make_master_with_replica(Rig& r) {
  make_master(r);
  r.commit(r.cas("appoint-replica"));
}

// A replica n1 of master n2 (epoch 3, renewal 7).
void make_replica(Rig& r) {
  r.start(table_with("n2", 3, Phase::established, 7, "n1"));
  REQUIRE(r.agent().state() == AgentState::replica);
}

// make_replica, with the master heard for an hour (past FIG. 3's restart
// rule) and the agent built with `set` applied to its config (a planted rule).
void make_settled_replica(Rig& r, const std::function<void(AgentConfig&)>& set = {}) {
  if (set) {
    set(r.cfg);
    r.a = std::make_unique<HaAgent>(r.cfg, r.now);
  }
  r.view["n2"].alive_since = r.now - 1h;
  make_replica(r);
}

}  // namespace

TEST_CASE("agent: starting until ready and a first table; first role reported with its hook") {
  Rig r("n3");
  r.out.clear();
  r.a->on_table(table_with("n1", 2, Phase::established, 5, "n2"), r.now, r.out);
  CHECK(r.agent().state() == AgentState::starting);
  CHECK(r.out.changes.empty());
  r.out.clear();
  r.a->on_ready(r.now, r.out);
  CHECK(r.agent().state() == AgentState::data);
  CHECK(r.agent().role() == Role::data);
  CHECK(r.events() == Strings{"+data"});
  CHECK(r.hooks() == Strings{"data"});
  CHECK(r.out.hooks[0].prev_master == "n1");
  CHECK(r.agent().epoch_seen() == 2);
}

TEST_CASE("agent: a fresh cluster's vacant role is claimed, broadcast and established") {
  Rig r("n1");
  r.start(std::nullopt);
  CHECK(r.events() == Strings{"+data"});
  CHECK(r.out.cas.empty());
  r.tick(kHb - 1ms);
  CHECK(r.out.cas.empty());  // first in line, but still after one heartbeat
  r.tick(1ms);
  auto claim = r.cas("claim");
  CHECK(r.agent().state() == AgentState::designating);
  r.commit(claim);
  REQUIRE(r.reg->master);
  CHECK(*r.reg->master == MasterEntry{"n1", 1, Phase::designated, 0, 0});
  CHECK(r.reg->epoch == 1);
  CHECK(r.agent().state() == AgentState::broadcasting);
  REQUIRE(r.out.broadcasts.size() == 1);
  CHECK(r.out.broadcasts[0].epoch == 1);
  CHECK(r.out.broadcasts[0].master == "n1");
  r.ack("n2", 1);
  Time started = r.now;
  r.commit(r.cas("establish"), 5ms);
  CHECK(*r.reg->master == MasterEntry{"n1", 1, Phase::established, 1000, 1});
  CHECK(r.agent().state() == AgentState::master);
  CHECK(r.agent().role() == Role::master);
  CHECK(r.events() == Strings{"+promoted"});
  CHECK(r.out.changes[0].from == Role::data);
  CHECK(r.hooks() == Strings{"master"});
  CHECK(r.agent().lease_bound() == started + 950ms);
  CHECK(r.agent().acting_master(r.now));
  CHECK(r.steps() == Strings{"detect", "designate", "broadcast", "establish"});
  // The master's first task: a replica.
  auto appoint = r.cas("appoint-replica");
  r.commit(appoint);
  REQUIRE(r.reg->replica);
  CHECK(r.reg->replica->node == "n2");  // equally old: smallest id
}

TEST_CASE("agent: vacant-role claims are staggered by age, then member order") {
  Rig r("n3");
  r.start(std::nullopt);
  r.tick(5 * kHb - 1ms);  // position 2 of 3: five heartbeats
  CHECK(r.out.cas.empty());
  r.tick(1ms);
  CHECK(r.cas("claim").purpose == "claim");

  Rig old("n3");
  old.view["n1"].alive_since = old.now + 10s;  // n3 has been alive longest
  old.view["n2"].alive_since = old.now + 10s;
  old.start(std::nullopt);
  old.tick(kHb);
  CHECK(old.cas("claim").purpose == "claim");
}

TEST_CASE("agent: a claim refused because someone else got there first stays data") {
  Rig r("n1");
  r.start(std::nullopt);
  r.tick(kHb);
  auto claim = r.cas("claim");
  r.reg = table_with("n2", 1, Phase::designated, 0, std::nullopt);  // n2 won the race
  r.commit(claim);
  CHECK(r.agent().state() == AgentState::data);
  CHECK(r.events() == Strings{"+failover-aborted"});
  CHECK(r.out.hooks.empty());
  CHECK(r.cas("read").purpose == "read");
}

TEST_CASE("agent: a claim held off by the lease of a master that took the role meanwhile ends at once") {
  // Four members: the two acceptors holding the new master's lease refuse,
  // the other two promise, and neither is a majority, so the claim sees
  // lease_held, never the table. Its copy of the table shows the master.
  for (bool taken : {true, false}) {
    CAPTURE(taken);
    Rig r("n1", {"n1", "n2", "n3", "n4"});
    r.start(std::nullopt);
    r.tick(kHb);
    auto claim = r.cas("claim");
    if (taken) r.table(table_with("n4", 1, Phase::established, 1, std::nullopt));
    r.fail(claim, CasOutcome::lease_held);
    if (taken) {
      CHECK(r.agent().state() == AgentState::data);
      CHECK(r.events() == Strings{"+failover-aborted"});
    } else {  // no master in the table: the lease is a dead one's, waited out
      CHECK(r.agent().state() == AgentState::designating);
      CHECK(r.events().empty());
    }
  }
}

TEST_CASE("agent: the master renews every heartbeat and its lease follows the renewal's start") {
  Rig r("n1");
  make_master_with_replica(r);
  CHECK(r.out.cas.empty());
  r.tick(kHb);
  auto renew = r.cas("renew");
  Time started = r.now;
  r.commit(renew, 30ms);
  CHECK(r.reg->master->renewal == 2);
  CHECK(r.reg->master->lease_ms == 1000);
  CHECK(r.agent().lease_bound() == started + 950ms);
  r.tick(70ms);
  CHECK(r.cas("renew").purpose == "renew");
}

TEST_CASE("agent: a renewal after one that reached only a few acceptors never proposes an equal value") {
  Rig r("n1");
  make_master_with_replica(r);
  r.tick(kHb);
  auto first = r.cas("renew");
  auto attempt = first.change(r.reg);  // accepted by a few acceptors only
  REQUIRE(attempt);
  CHECK(attempt->master->renewal == 2);
  r.fail(first, CasOutcome::no_quorum);
  r.tick(kHb);
  // The majority still holds renewal 1: the next renewal goes above the
  // attempt (its acceptors' lease clocks run from the earlier attempt).
  auto second = r.cas("renew");
  r.commit(second);
  CHECK(r.reg->master->renewal == 3);
  CHECK(r.agent().acting_master(r.now));
}

TEST_CASE("agent: a master that cannot renew stops at its lease bound and reads the table (FIG. 3)") {
  Rig r("n1");
  make_master_with_replica(r);
  Time bound = r.agent().lease_bound();
  // Renewals go out but never commit (a partition).
  for (Time t = r.now + kHb; t < bound; t += kHb) {
    r.tick(t - r.now);
    REQUIRE(r.out.cas.size() == 1);
    r.fail(r.out.cas[0], CasOutcome::no_quorum);
    CHECK(r.agent().acting_master(r.now));
  }
  CHECK(!r.agent().acting_master(bound));  // no input needed to stop
  r.tick(bound - r.now);
  CHECK(r.agent().state() == AgentState::replica);
  CHECK(r.agent().role() == Role::replica);
  CHECK(r.events() == Strings{"+lease-lost"});
  CHECK(r.out.changes[0].from == Role::master);
  CHECK(r.hooks() == Strings{"replica"});
  auto read = r.cas("read");

  SUBCASE("a newer master exists: demote to replica") {
    r.reg = table_with("n2", 2, Phase::established, 3, "n3");
    r.commit(read);
    auto self = r.cas("replica-self");
    r.commit(self);
    CHECK(r.reg->replica == ReplicaEntry{"n1", 2});
    CHECK(r.events() == Strings{"+demoted"});
    CHECK(r.out.hooks.empty());  // the replica hook already ran at +lease-lost
    CHECK(r.agent().state() == AgentState::replica);
    CHECK(r.agent().role() == Role::replica);
  }
  SUBCASE("nobody took over: renew from exactly that entry and resume") {
    r.commit(read);
    auto renew = r.cas("renew");
    MasterEntry before = *r.reg->master;
    r.commit(renew);
    CHECK(r.reg->master->renewal == before.renewal + 1);
    CHECK(r.events() == Strings{"+resumed"});
    CHECK(r.hooks() == Strings{"master"});
    CHECK(r.agent().acting_master(r.now));
  }
  SUBCASE("the role was vacated meanwhile: claim it at once") {
    RoleTable t = *r.reg;
    t.master.reset();
    r.reg = t;
    r.commit(read);
    auto claim = r.cas("claim");
    r.commit(claim);
    CHECK(r.reg->master == MasterEntry{"n1", 2, Phase::designated, 0, 0});
    CHECK(r.agent().state() == AgentState::broadcasting);
  }
}

TEST_CASE("agent: a renewal refused by a newer master demotes at once") {
  Rig r("n1");
  make_master_with_replica(r);
  r.tick(kHb);
  auto renew = r.cas("renew");
  r.reg = table_with("n3", 2, Phase::established, 1, "n2");
  r.commit(renew);
  CHECK(!r.agent().acting_master(r.now));
  CHECK(r.events() == Strings{"+demoted"});
  CHECK(r.hooks() == Strings{"replica"});
  // FIG. 3: the read goes out at once; the table update arrives meanwhile.
  auto read = r.cas("read");
  r.table(*r.reg);
  CHECK(r.out.changes.empty());
  r.commit(read);
  r.commit(r.cas("replica-self"));
  CHECK(r.out.changes.empty());  // +demoted was said once
  CHECK(r.reg->replica == ReplicaEntry{"n1", 2});
  CHECK(r.agent().role() == Role::replica);
}

TEST_CASE("agent: a table naming another master stops an acting master at once") {
  Rig r("n1");
  make_master_with_replica(r);
  r.table(table_with("n2", 2, Phase::established, 1, std::nullopt));
  CHECK(!r.agent().acting_master(r.now));
  CHECK(r.events() == Strings{"+demoted"});
  CHECK(r.hooks() == Strings{"replica"});
}

TEST_CASE("agent: a restarted old master finds a newer master and demotes itself (claim 1)") {
  Rig r("n1");
  r.a->set_previous_role(Role::master, 3);
  r.start(table_with("n2", 4, Phase::established, 9, "n3"));
  CHECK(r.agent().state() == AgentState::starting);
  CHECK(r.out.changes.empty());
  r.commit(r.cas("read"));
  auto self = r.cas("replica-self");
  r.commit(self);
  CHECK(r.reg->replica == ReplicaEntry{"n1", 4});
  CHECK(r.reg->master == MasterEntry{"n2", 4, Phase::established, 1000, 9});
  CHECK(r.events() == Strings{"+demoted"});
  CHECK(r.out.changes[0].from == Role::master);
  CHECK(r.out.changes[0].to == Role::replica);
  CHECK(r.hooks() == Strings{"replica"});
  CHECK(r.agent().state() == AgentState::replica);
  CHECK(!r.agent().acting_master(r.now));
}

TEST_CASE("agent: a restarted old master's replica-self write needs the same master and epoch, not renewal") {
  Rig r("n1");
  r.a->set_previous_role(Role::master, 3);
  r.start(table_with("n2", 4, Phase::established, 9, "n3"));
  r.commit(r.cas("read"));
  auto self = r.cas("replica-self");
  SUBCASE("the new master renewed meanwhile: demoted all the same") {
    r.reg->master->renewal = 10;
    r.commit(self);
    CHECK(r.reg->replica == ReplicaEntry{"n1", 4});
    CHECK(r.reg->master == MasterEntry{"n2", 4, Phase::established, 1000, 10});
    CHECK(r.events() == Strings{"+demoted"});
    CHECK(r.agent().state() == AgentState::replica);
  }
  SUBCASE("another master at a newer epoch meanwhile: refused") {
    r.reg = table_with("n3", 5, Phase::established, 1, "n2");
    auto before = r.reg;
    r.commit(self);
    CHECK(r.reg == before);
    CHECK(r.agent().state() != AgentState::master);
  }
}

TEST_CASE("agent: a restarted master still named in the table resumes at a new epoch, never at its old one") {
  // Its earlier process acted at epoch 3: the epoch is a fencing token, so
  // the new process takes 4 (the acceptors hold it off until the earlier
  // process's lease has run out).
  Rig r("n1");
  r.a->set_previous_role(Role::master, 3);
  r.start(table_with("n1", 3, Phase::established, 9, "n2"));
  // No read first: it would write the old entry again and restart its lease.
  r.commit(r.cas("renew"));
  REQUIRE(r.reg->master);
  CHECK(r.reg->master->node == "n1");
  CHECK(r.reg->master->epoch == 4);
  CHECK(r.reg->epoch == 4);
  CHECK(r.reg->master->phase == Phase::established);
  CHECK(r.reg->master->renewal == 0);
  CHECK(r.reg->replica->node == "n2");
  CHECK(r.events() == Strings{"+resumed"});
  CHECK(r.hooks() == Strings{"master"});
  CHECK(r.agent().acting_master(r.now));
  CHECK(r.agent().master_epoch() == 4);
  CHECK(r.agent().epoch_seen() == 4);
}

TEST_CASE("agent: a restored master waits for someone else's designation, then follows it") {
  Rig r("n1");
  r.a->set_previous_role(Role::master, 3);
  r.start(table_with("n2", 4, Phase::designated, 0, std::nullopt));
  r.commit(r.cas("read"));
  CHECK(r.out.cas.empty());
  r.tick(kHb - 1ms);
  CHECK(r.out.cas.empty());
  r.tick(1ms);
  auto read = r.cas("read");  // re-read every heartbeat
  r.reg = table_with("n2", 4, Phase::established, 1, std::nullopt);
  r.commit(read);
  r.commit(r.cas("replica-self"));
  CHECK(r.events() == Strings{"+demoted"});
  CHECK(r.agent().role() == Role::replica);
}

TEST_CASE("agent: the replica fails over: detect, prepare, designate, broadcast, establish (claim 2)") {
  Rig r("n1");
  make_replica(r);
  CHECK(r.events() == Strings{"+replica"});
  CHECK(r.hooks() == Strings{"replica"});
  r.set_alive("n2", false);
  CHECK(r.out.hooks.empty());
  r.tick(1000ms - 1ms);  // renewal unchanged for less than failure_timeout
  CHECK(r.out.hooks.empty());
  r.tick(1ms);
  CHECK(r.agent().state() == AgentState::preparing);
  REQUIRE(r.out.hooks.size() == 1);
  CHECK(r.out.hooks[0].hook == "prepare");
  CHECK(r.out.hooks[0].limit == 5000ms);
  CHECK(r.out.hooks[0].prev_master == "n2");
  CHECK(r.steps() == Strings{"detect", "reserve"});
  CHECK(r.out.cas.empty());
  r.tick(2s);  // a slow prepare hook
  CHECK(r.agent().state() == AgentState::preparing);
  r.hook_done("prepare", 0);
  auto designate = r.cas("designate");
  r.commit(designate);
  CHECK(r.reg->master == MasterEntry{"n1", 4, Phase::designated, 0, 0});
  CHECK(r.reg->epoch == 4);
  CHECK(!r.reg->replica);
  REQUIRE(r.out.broadcasts.size() == 1);
  CHECK(r.out.broadcasts[0].epoch == 4);
  CHECK(r.agent().epoch_seen() == 4);
  r.ack("n3", 3);  // an old epoch's ack does not count
  CHECK(r.out.cas.empty());
  r.ack("n3", 4);
  r.commit(r.cas("establish"));
  CHECK(r.events() == Strings{"+promoted"});
  CHECK(r.out.changes[0].from == Role::replica);
  CHECK(r.out.changes[0].epoch == 4);
  CHECK(r.hooks() == Strings{"master"});
  CHECK(r.agent().acting_master(r.now));
  CHECK(r.steps() == Strings{"detect", "reserve", "prepare", "designate", "broadcast", "establish"});
  CHECK(r.agent().last_failover()[2].end - r.agent().last_failover()[2].start == 2s);
  CHECK(r.cas("appoint-replica").purpose == "appoint-replica");
}

TEST_CASE("agent: the designation changes from exactly the entry seen failing") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  auto designate = r.cas("designate");
  SUBCASE("someone else changed the table: stay replica") {
    r.reg = table_with("n3", 4, Phase::designated, 0, std::nullopt);
    r.commit(designate);
    CHECK(r.agent().state() == AgentState::replica);
    CHECK(r.events() == Strings{"+failover-aborted"});
    CHECK(r.hooks() == Strings{"abort"});
    CHECK(r.cas("read").purpose == "read");
  }
  SUBCASE("the old lease still runs at a majority: retry within failover-timeout") {
    r.fail(designate, CasOutcome::lease_held);
    CHECK(r.agent().state() == AgentState::designating);
    CHECK(r.out.cas.empty());
    r.tick(kHb);
    r.commit(r.cas("designate"));
    CHECK(r.agent().state() == AgentState::broadcasting);
  }
  SUBCASE("lease still held after failover-timeout: give up") {
    for (int i = 0; i < 60 && r.agent().state() == AgentState::designating; ++i) {
      if (!r.out.cas.empty()) r.fail(r.out.cas[0], CasOutcome::lease_held);
      r.tick(kHb);
    }
    CHECK(r.agent().state() == AgentState::replica);
    CHECK(r.events() == Strings{"+failover-aborted"});
    CHECK(r.hooks() == Strings{"abort"});
  }
  SUBCASE("no quorum while a majority is alive: rival ballots or lost answers, retried") {
    r.fail(designate, CasOutcome::no_quorum);
    CHECK(r.agent().state() == AgentState::designating);
    CHECK(r.noted("no quorum while a majority is alive"));
    r.tick(kHb);
    r.commit(r.cas("designate"));
    CHECK(r.agent().state() == AgentState::broadcasting);
  }
  SUBCASE("no quorum: a minority never promotes, and backs off") {
    r.set_alive("n3", false);  // n1 alone of three
    r.fail(designate, CasOutcome::no_quorum);
    CHECK(r.agent().state() == AgentState::replica);
    CHECK(r.events() == Strings{"+failover-aborted"});
    CHECK(r.hooks() == Strings{"abort"});
    r.set_alive("n3", true);
    r.tick(1s);  // still failing, but within failover_backoff of the attempt
    CHECK(r.out.hooks.empty());
    r.tick(1s);
    CHECK(r.hooks() == Strings{"prepare"});
  }
}

TEST_CASE("agent: claim 5 - the master restored during prepare terminates the failover") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  REQUIRE(r.agent().state() == AgentState::preparing);
  SUBCASE("alive again in the member view") {
    r.set_alive("n2", true);
  }
  SUBCASE("its renewal counter moved") {
    r.table(table_with("n2", 3, Phase::established, 8, "n1"));
  }
  CHECK(r.out.abort_hook);
  CHECK(r.agent().state() == AgentState::replica);
  CHECK(r.events() == Strings{"+failover-aborted"});
  CHECK(r.hooks() == Strings{"abort"});
  REQUIRE(r.steps().size() == 3);
  CHECK(r.agent().last_failover()[2].outcome.starts_with("aborted"));
  // The killed prepare's late answer changes nothing.
  r.hook_done("prepare", -9);
  CHECK(r.out.changes.empty());
  CHECK(r.out.cas.empty());
  CHECK(r.agent().role() == Role::replica);
}

// Claim 1 taken literally: a master the membership still sees is judged
// failed once its entry has stood still for one failure timeout (not
// later), and the run confirms it with a read first.
TEST_CASE("agent: a master still seen alive is judged failed after one failure timeout of a still entry") {
  Rig r("n1");
  r.view["n2"].alive_since = r.now - 1h;
  make_replica(r);
  r.table(table_with("n2", 3, Phase::established, 8, "n1"));  // seen renewing: past FIG. 3
  r.confirms_after(1000ms);
  CHECK(r.agent().last_failover()[0].outcome.find("alive and not renewed for 1000ms") != std::string::npos);
}

// FIG. 3: a master restarted lately resumes once its earlier life's lease
// has run out, one failure timeout after its first read; the others give
// it half a timeout more than that, until they see it renew.
TEST_CASE("agent: a master not seen renewing since its restart is judged after 1.5 failure timeouts") {
  Rig r("n1");
  r.view["n2"].alive_since = r.now - 1h;
  make_replica(r);
  r.table(table_with("n2", 3, Phase::established, 8, "n1"));  // a renewal of its earlier life
  r.view["n2"].alive_since = r.now;                            // then it restarted
  r.members();
  r.confirms_after(1500ms);
}

// A full cluster restart: we first see the table a second after the
// restarted master was heard. That first sight is no move of its entry:
// it still gets FIG. 3's longer wait.
TEST_CASE("agent: the first sight of a restarted master's entry does not end its FIG. 3 wait") {
  Rig r("n1");
  r.view["n2"].alive_since = r.now - 1s;
  make_replica(r);
  r.confirms_after(1500ms);
}

// Once the restarted master's entry moves (here its resume), it holds a
// lease of its own: the normal rule. Seen in a chaos soak: a master deaf
// right after its resume was judged half a timeout late.
TEST_CASE("agent: a restarted master seen resuming at a new epoch is judged after one failure timeout") {
  Rig r("n1");
  r.view["n2"].alive_since = r.now - 1h;
  make_replica(r);
  r.table(table_with("n2", 3, Phase::established, 8, "n1"));
  r.view["n2"].alive_since = r.now;  // it restarted
  r.members();
  r.tick(100ms);
  r.table(table_with("n2", 4, Phase::established, 0, "n1"));  // and resumed at epoch 4
  r.confirms_after(1000ms);
}

// A run that began while the master was still heard judges its return by
// its entry alone (a deaf master keeps sending heartbeats); one that has
// seen it silent (a pause) takes hearing it again as its return.
TEST_CASE("agent: claim 5 - a master heard again after a silence is restored, one heard throughout is not") {
  for (bool silent : {true, false}) {
    CAPTURE(silent);
    Rig r("n1");
    r.view["n2"].alive_since = r.now - 1h;
    make_replica(r);
    r.table(table_with("n2", 3, Phase::established, 8, "n1"));  // seen renewing
    r.view["n2"].silent = silent;
    r.members();
    r.tick(1s);
    r.commit(r.cas("confirm"));  // the membership still counts it: read first
    REQUIRE(r.hooks() == Strings{"prepare"});
    CHECK(r.agent().last_failover()[0].outcome.find(silent ? "silent" : "alive") != std::string::npos);
    r.view["n2"].silent = false;  // heard again (or still)
    r.members();
    CHECK(r.out.abort_hook == silent);
    CHECK(r.events() == (silent ? Strings{"+failover-aborted"} : Strings{}));
    CHECK(r.agent().state() == (silent ? AgentState::replica : AgentState::preparing));
  }
}

TEST_CASE("agent: a failing prepare hook aborts the failover and backs off") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 3);
  CHECK(r.agent().state() == AgentState::replica);
  CHECK(r.events() == Strings{"+failover-aborted"});
  CHECK(r.hooks() == Strings{"abort"});
  CHECK(r.out.cas.empty());
  // It gave its reservation back (released: no candidate), so the others
  // need not wait for it to go stale.
  REQUIRE(r.reservations);
  CHECK(reservation_from_register(*r.reservations)->candidate.empty());
  r.tick(2s - 1ms);
  CHECK(r.out.hooks.empty());
  r.tick(1ms);
  CHECK(r.hooks() == Strings{"prepare"});
  CHECK(reservation_from_register(*r.reservations)->candidate == "n1");
}

// Seen in a chaos soak: a run aborted while its reservation was on the way
// (the master was heard again); the reservation committed all the same, and
// the others yielded to it while its holder backed off: no master for 2 s
// of a mute master's fault.
TEST_CASE("agent: a reservation that commits after its run ended is given back") {
  for (auto outcome : {CasOutcome::committed, CasOutcome::no_quorum, CasOutcome::precondition_failed}) {
    CAPTURE(static_cast<int>(outcome));
    Rig r("n1");
    make_replica(r);
    r.hold_reservations = true;
    r.set_alive("n2", false);
    r.tick(1s);
    CasRequest reserve = r.cas("reserve");
    r.set_alive("n2", true);  // back before the reservation's answer
    CHECK(r.events() == Strings{"+failover-aborted"});
    if (outcome != CasOutcome::precondition_failed) r.reservations = reserve.raw(r.reservations);
    r.out.clear();
    r.a->on_cas_done(reserve.id, outcome, std::nullopt, r.now, r.now, r.out);
    if (outcome == CasOutcome::precondition_failed) {  // refused: nothing of ours to give back
      CHECK(r.out.cas.empty());
      continue;
    }
    auto release = r.cas("release-reservation");
    r.reservations = release.raw(r.reservations);
    REQUIRE(r.reservations);
    CHECK(reservation_from_register(*r.reservations)->candidate.empty());
    CHECK(r.hooks().empty());  // no prepare ran for it
  }
}

// The backoff keeps a node from running `prepare` again at once; a run that
// ended before it (the master heard again while it reserved) ran no hook.
// Seen in a chaos soak: a replica backing off after such a run was out of
// the next failover for 2 s.
TEST_CASE("agent: a run that ends before its prepare ran does not back off") {
  Rig r("n1");
  r.view["n2"].alive_since = r.now - 1h;
  make_replica(r);
  r.table(table_with("n2", 3, Phase::established, 8, "n1"));  // seen renewing: past FIG. 3
  r.hold_reservations = true;
  r.set_alive("n2", false);
  r.tick(1s);
  CasRequest reserve = r.cas("reserve");
  r.set_alive("n2", true);  // heard again: the run ends in its reserve step
  CHECK(r.events() == Strings{"+failover-aborted"});
  r.out.clear();
  r.a->on_cas_done(reserve.id, CasOutcome::precondition_failed, std::nullopt, r.now, r.now, r.out);
  r.hold_reservations = false;
  // Heard, but its entry still has not moved: a new run at once, which
  // confirms it with a read first (no release: the refused one wrote nothing).
  r.commit(r.cas("confirm"));
  CHECK(r.hooks() == Strings{"prepare"});
}

// Seen in chaos soaks: an old master back from a cut learned the new
// master's entry from a read 0.5 s after that master was cut off in turn,
// and counted its silence from then: 1.25 s to the next master (bound
// 1.11 s). A write-back's commit says how long the acceptors still held the
// entry's lease; the entry has stood still at least the rest of the lease.
TEST_CASE("agent: an entry learned from a read's write-back is judged from the lease it has left") {
  for (bool plant : {false, true}) {
    CAPTURE(plant);
    Rig r("n1");
    make_settled_replica(r, [&](AgentConfig& c) { c.plant_commit_hint_ignored = plant; });
    r.table(table_with("n2", 3, Phase::established, 8, "n1"), 300);  // 700 ms into its lease of 1000
    r.confirms_after(plant ? 1000ms : 300ms);
  }
  // Only a write-back carries a hint; a hint beyond the lease counts as now.
  Rig r("n1");
  make_settled_replica(r);
  r.table(table_with("n2", 3, Phase::established, 8, "n1"), 5000);
  r.confirms_after(1000ms);
}

// Seen in a chaos soak: the master came back during a replica's run and
// renewed (the run aborted), then was cut off again within the backoff. The
// replica sat the new failure out and a data node took over 1.35 s after it.
// The backoff holds back a second run against the same entry only.
TEST_CASE("agent: after an aborted run the backoff holds for that entry, not for the master's next renewal") {
  for (bool plant : {false, true}) {
    CAPTURE(plant);
    Rig r("n1");
    make_settled_replica(r, [&](AgentConfig& c) { c.plant_backoff_by_epoch = plant; });
    r.table(table_with("n2", 3, Phase::established, 8, "n1"));  // seen renewing: past FIG. 3
    r.set_alive("n2", false);
    r.tick(1s);
    REQUIRE(r.agent().state() == AgentState::preparing);
    r.table(table_with("n2", 3, Phase::established, 9, "n1"));  // it renewed: claim 5
    REQUIRE(r.events() == Strings{"+failover-aborted"});
    r.hook_done("prepare", -9);
    // Renewal 9 stands still from now on: judged failed one failure timeout later.
    r.tick(1s - 1ms);
    CHECK(r.out.hooks.empty());
    r.tick(1ms);
    if (!plant) {
      CHECK(r.hooks() == Strings{"prepare"});
      continue;
    }
    CHECK(r.out.hooks.empty());  // the earlier rule: out until the backoff ends
    r.tick(1s);
    CHECK(r.hooks() == Strings{"prepare"});
  }
}

// A master that keeps stalling and coming back: the second aborted run in a
// row against its epoch backs off for the whole epoch, so it gets one
// prepare per backoff, not one per stall (review).
TEST_CASE("agent: after two aborted runs against one epoch the backoff holds for the epoch") {
  Rig r("n1");
  make_settled_replica(r);
  r.table(table_with("n2", 3, Phase::established, 8, "n1"));
  r.set_alive("n2", false);
  std::uint64_t renewal = 8;
  for (int run = 1; run <= 2; ++run) {
    r.tick(1s);
    REQUIRE(r.hooks() == Strings{"prepare"});
    r.table(table_with("n2", 3, Phase::established, ++renewal, "n1"));  // back: claim 5
    REQUIRE(r.events() == Strings{"+failover-aborted"});
    r.hook_done("prepare", -9);
  }
  r.tick(1s);
  CHECK(r.out.hooks.empty());  // its third stall: out until the backoff ends
  r.tick(1s);
  CHECK(r.hooks() == Strings{"prepare"});
}

// A restarted master's first read writes back its earlier life's last
// renewal, and its acceptor restarted that value's lease clock when it
// loaded it: the hint then dates the renewal to the restart. For a holder
// first heard less than a lease ago the hint is not used (review).
TEST_CASE("agent: a write-back's lease hint is not used for a holder heard for less than a lease") {
  Rig r("n1");
  r.view["n2"].alive_since = r.now;  // a process just started
  make_replica(r);
  r.tick(50ms);
  r.table(table_with("n2", 3, Phase::established, 8, "n1"), 300);
  r.confirms_after(1000ms);  // from our sight, as without a hint
}

// Once the replica is gone too, the data nodes count their turn from the
// stopped entry, not from the membership's verdict on the master, which
// came a second later in a soak (the replica cut off with the master).
TEST_CASE("agent: with the replica gone, a data node's turn ignores a later membership verdict on the master") {
  Rig r("n3", {"n1", "n2", "n3", "n4", "n5"});
  r.start(table_with("n2", 3, Phase::established, 7, "n1"));
  REQUIRE(r.agent().state() == AgentState::data);
  r.tick(1050ms);  // the entry stopped 1.05 failure timeouts ago; both still seen alive
  CHECK(r.out.cas.empty());
  r.view["n1"].alive = false;
  r.view["n2"].alive = false;
  r.members();
  CHECK(r.out.cas.empty());
  r.tick(150ms - 1ms);  // a heartbeat and its stagger (first in line now) after the entry's failure timeout
  CHECK(r.hooks().empty());
  r.tick(1ms);
  CHECK(r.hooks() == Strings{"prepare"});
}

TEST_CASE("agent: a reservation for a newer epoch than our copy shows is never overwritten") {
  Rig r("n3");
  r.start(table_with("n2", 3, Phase::established, 7, std::nullopt));
  // Someone fails over a master at epoch 5, which our copy has not seen.
  MasterEntry newer{"n4", 5, Phase::established, 1000, 2};
  r.reservations = to_register(FailoverReservation{"n1", newer, 1});
  r.set_alive("n2", false);
  for (int i = 0; i < 4; ++i) {
    r.tick(1s);
    CHECK(r.out.hooks.empty());
  }
  CHECK(reservation_from_register(*r.reservations)->candidate == "n1");
}

TEST_CASE("agent: a prepare hook that never answers is aborted after failover-timeout") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.tick(5s);
  CHECK(r.agent().state() == AgentState::preparing);
  r.tick(kHb);
  CHECK(r.out.abort_hook);
  CHECK(r.hooks() == Strings{"abort"});
}

TEST_CASE("agent: claim 3 - the old master restored before a quorum acknowledged gets the role back") {
  Rig r("n1", {"n1", "n2", "n3", "n4", "n5"});
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  r.commit(r.cas("designate"));
  r.ack("n3", 4);  // two of five: below the quorum of three
  CHECK(r.out.cas.empty());
  r.set_alive("n2", true);
  auto back = r.cas("hand-back");
  r.commit(back);
  // The old master at our epoch, established, one renewal on, with its lease.
  CHECK(r.reg->master == MasterEntry{"n2", 4, Phase::established, 1000, 8});
  CHECK(r.reg->replica == ReplicaEntry{"n1", 4});
  CHECK(r.reg->epoch == 4);
  CHECK(r.events() == Strings{"+handed-back"});
  CHECK(r.hooks() == Strings{"abort"});
  CHECK(r.agent().state() == AgentState::replica);
  CHECK(r.agent().role() == Role::replica);
  CHECK(r.steps() == Strings{"detect", "reserve", "prepare", "designate", "broadcast"});
}

TEST_CASE("agent: the old master takes a handed-back role with one renewal") {
  Rig r("n2");
  r.a->set_previous_role(Role::master, 3);
  r.start(table_with("n1", 4, Phase::designated, 0, std::nullopt));
  r.commit(r.cas("read"));
  CHECK(r.out.cas.empty());  // waits for n1's designation to resolve
  RoleTable back = table_with("n2", 4, Phase::established, 8, "n1");
  back.reason = "hand-back to n2: restored before the broadcast of n1 completed";
  r.table(back);
  r.tick(kHb);
  r.commit(r.cas("read"));
  r.commit(r.cas("renew"));
  CHECK(r.reg->master == MasterEntry{"n2", 4, Phase::established, 1000, 9});
  CHECK(r.events() == Strings{"+handed-back"});
  CHECK(r.out.changes[0].epoch == 4);
  CHECK(r.hooks() == Strings{"master"});
  CHECK(r.agent().acting_master(r.now));
  // Taken: the table no longer reads as a hand-back waiting to be taken.
  CHECK(r.reg->reason.starts_with("n2 took the role back: hand-back to n2"));
}

TEST_CASE("agent: a restarted master never takes a hand-back its earlier process already took") {
  // Found by a soak: the earlier process took the handed-back entry at epoch
  // 4 and acted at it; after a kill -9 of every node, the table still read
  // "hand-back" and the new process acted at epoch 4 again.
  Rig r("n2");
  r.a->set_previous_role(Role::master, 4);
  RoleTable t = table_with("n2", 4, Phase::established, 9, "n1");
  t.reason = "hand-back to n2: restored before the broadcast of n1 completed";
  r.start(t);
  r.commit(r.cas("renew"));
  REQUIRE(r.reg->master);
  CHECK(r.reg->master->epoch == 5);
  CHECK(r.reg->master->renewal == 0);
  CHECK(r.events() == Strings{"+resumed"});
  CHECK(r.agent().master_epoch() == 5);
}

TEST_CASE("agent: claim 4 - too few acknowledgements vacate the role") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  r.commit(r.cas("designate"));
  r.tick(kHb);
  CHECK(r.out.broadcasts.size() == 1);  // repeated while waiting
  r.tick(400ms - 1ms);
  CHECK(r.out.cas.empty());
  r.tick(1ms);
  auto vacate = r.cas("vacate");
  r.commit(vacate);
  CHECK(!r.reg->master);
  CHECK(r.reg->epoch == 4);  // the epoch stays used
  CHECK(r.reg->replica == ReplicaEntry{"n1", 4});
  CHECK(r.events() == Strings{"+vacated"});
  CHECK(r.hooks() == Strings{"abort"});
  CHECK(r.agent().role() == Role::replica);
  // Backoff: no claim of the vacant role before failover_backoff.
  r.tick(2s - 1ms);
  CHECK(r.out.cas.empty());
  r.tick(1ms);
  CHECK(r.cas("claim").purpose == "claim");
}

TEST_CASE("agent: no failover while the master is alive, its entry moves, maintenance is on, or for non-replicas") {
  SUBCASE("master alive") {
    Rig r("n1");
    make_replica(r);
    r.tick(5s);
    CHECK(r.out.hooks.empty());
  }
  SUBCASE("renewals keep coming though the view says failed") {
    Rig r("n1");
    make_replica(r);
    r.set_alive("n2", false);
    for (int i = 8; i < 30; ++i) {
      r.tick(kHb * 3);
      r.table(table_with("n2", 3, Phase::established, static_cast<std::uint64_t>(i), "n1"));
      CHECK(r.out.hooks.empty());
    }
  }
  SUBCASE("maintenance") {
    Rig r("n1");
    RoleTable t = table_with("n2", 3, Phase::established, 7, "n1");
    t.maintenance = true;
    r.start(t);
    r.set_alive("n2", false);
    r.tick(5s);
    CHECK(r.out.hooks.empty());
    CHECK(r.agent().state() == AgentState::replica);
  }
  SUBCASE("a data node yields to the replica's reservation until it goes stale") {
    Rig r("n3");
    RoleTable t = table_with("n2", 3, Phase::established, 7, "n1");
    r.start(t);
    r.reservations = to_register(FailoverReservation{"n1", *t.master, 1});  // the replica reserved
    r.set_alive("n2", false);
    for (int i = 0; i < 5; ++i) {  // 5 s: the replica's prepare may still run (failover-timeout 5 s)
      r.tick(1s);
      CHECK(r.out.hooks.empty());
      CHECK(r.agent().role() == Role::data);
    }
    CHECK(reservation_from_register(*r.reservations)->candidate == "n1");
    // It first yielded at 2 s; at 9 s the reservation has stayed the same
    // for longer than a prepare can run ((failover-timeout + a heartbeat)
    // x 1.1 for drift + failure-timeout + 2 heartbeats = 6.81 s): taken over.
    r.tick(4s);
    CHECK(r.hooks() == Strings{"prepare"});
    CHECK(reservation_from_register(*r.reservations)->candidate == "n3");
  }
  SUBCASE("a replica that sees no majority alive does not even try") {
    Rig r("n1", {"n1", "n2", "n3", "n4", "n5"});
    r.start(table_with("n2", 3, Phase::established, 7, "n1"));
    for (const auto& id : {"n2", "n3", "n4"}) r.set_alive(id, false);
    for (int i = 0; i < 10; ++i) {
      r.tick(1s);
      CHECK(r.out.cas.empty());
      CHECK(r.out.hooks.empty());
    }
    CHECK(r.agent().state() == AgentState::replica);
    CHECK(!r.reservations);
  }
  SUBCASE("a data node steps in when the live replica does not reserve") {
    Rig r("n3");
    r.start(table_with("n2", 3, Phase::established, 7, "n1"));
    r.set_alive("n2", false);
    r.tick(1000ms);  // failure timeout: the replica's turn
    CHECK(r.out.hooks.empty());
    r.tick(600ms);  // + a heartbeat, the stagger and a heartbeat more for a live replica
    CHECK(r.hooks() == Strings{"prepare"});
    CHECK(r.agent().state() == AgentState::preparing);
  }
  SUBCASE("a witness never takes a role") {
    Rig r("n3", {"n1", "n2", "n3"}, true);
    r.start(std::nullopt);
    CHECK(r.events() == Strings{"+witness"});
    CHECK(r.out.hooks.empty());
    CHECK(r.agent().role() == Role::witness);
    r.tick(10s);
    CHECK(r.out.cas.empty());
    r.table(table_with("n2", 3, Phase::established, 7, "n3"));  // even if named replica by mistake
    r.set_alive("n2", false);
    r.tick(10s);
    CHECK(r.out.cas.empty());
    CHECK(r.agent().role() == Role::witness);
  }
}

TEST_CASE("agent: maintenance is a compare-and-set any node may start") {
  Rig r("n3");
  r.start(table_with("n2", 3, Phase::established, 7, "n1"));
  r.out.clear();
  CHECK(r.a->set_maintenance(true, r.now, r.out).empty());
  auto m = r.cas("maintenance");
  r.commit(m);
  CHECK(r.reg->maintenance);
  CHECK(r.reg->master == MasterEntry{"n2", 3, Phase::established, 1000, 7});
  CHECK(r.noted("maintenance on"));
}

TEST_CASE("agent: broadcasts older than an epoch seen are refused") {
  Rig r("n3");
  r.start(table_with("n1", 5, Phase::established, 1, "n2"));
  r.out.clear();
  CHECK(!r.a->on_broadcast("n2", 4, r.now, r.out));
  CHECK(r.agent().refused_broadcasts() == 1);
  CHECK(r.noted("refused broadcast from n2"));
  CHECK(r.a->on_broadcast("n2", 6, r.now, r.out));
  CHECK(r.agent().epoch_seen() == 6);
  CHECK(!r.a->on_broadcast("n1", 5, r.now, r.out));
  CHECK(r.agent().refused_broadcasts() == 2);
}

TEST_CASE("agent: the master appoints its replica: preference, then the longest alive, eviction delayed") {
  Rig r("n1", {"n1", "n2", "n3", "n4"});
  r.view["n2"].alive_since = r.now + 3s;
  r.view["n3"].alive_since = r.now + 1s;
  r.view["n4"].alive_since = r.now + 2s;
  SUBCASE("longest alive") {
    make_master_with_replica(r);
    CHECK(r.reg->replica == ReplicaEntry{"n3", 1});
    // The replica fails: it keeps its slot for eviction_delay.
    r.set_alive("n3", false);
    Time failed = r.now;
    while (r.now < failed + 5s - kHb) {
      r.tick(kHb);
      if (!r.out.cas.empty()) r.commit(r.cas("renew"));
      REQUIRE(r.reg->replica == ReplicaEntry{"n3", 1});
    }
    r.tick(kHb);
    r.commit(r.cas("renew"));
    r.commit(r.cas("appoint-replica"));
    CHECK(r.reg->replica == ReplicaEntry{"n4", 1});
    CHECK(r.reg->reason.find("n3 not alive and synced") != std::string::npos);
  }
  SUBCASE("operator preference, skipping one that is not synced") {
    r.cfg.preferred_replicas = {"n4", "n2"};
    r.view["n4"].synced = false;
    r.a = std::make_unique<HaAgent>(r.cfg, r.now);
    make_master_with_replica(r);
    CHECK(r.reg->replica == ReplicaEntry{"n2", 1});
  }
  SUBCASE("witnesses are never appointed") {
    r.view["n2"].witness = r.view["n3"].witness = r.view["n4"].witness = true;
    make_master(r);
    CHECK(r.out.cas.empty());
    CHECK(r.noted("no member can be appointed replica"));
  }
}

TEST_CASE("agent: a node follows the replica slot with +replica and +data") {
  Rig r("n3");
  r.start(table_with("n1", 2, Phase::established, 1, "n2"));
  CHECK(r.events() == Strings{"+data"});
  r.table(table_with("n1", 2, Phase::established, 2, "n3"));
  CHECK(r.events() == Strings{"+replica"});
  CHECK(r.hooks() == Strings{"replica"});
  CHECK(r.out.changes[0].from == Role::data);
  r.table(table_with("n1", 2, Phase::established, 3, "n2"));
  CHECK(r.events() == Strings{"+data"});
  CHECK(r.hooks() == Strings{"data"});
  CHECK(r.agent().role() == Role::data);
}

TEST_CASE("agent: switchover - release, stop, hand over; the target broadcasts and establishes") {
  Rig r("n1");
  make_master_with_replica(r);
  r.out.clear();
  CHECK(r.a->switchover("n1", r.now, r.out) == "already the master");
  CHECK(r.a->switchover("n9", r.now, r.out) == "n9 is not a member");
  r.view["n3"].synced = false;
  r.members();
  CHECK(r.a->switchover("n3", r.now, r.out) == "n3 has not finished state transfer");
  CHECK(r.out.cas.empty());
  r.out.clear();
  CHECK(r.a->switchover("n2", r.now, r.out).empty());
  CHECK(!r.agent().acting_master(r.now));
  CHECK(r.events() == Strings{"+switchover-out"});
  CHECK(r.hooks() == Strings{"replica"});
  auto release = r.cas("release");
  r.commit(release);
  CHECK(r.reg->master->lease_ms == 0);
  // The handover waits for the step-down hook, so the new master's
  // `master` hook cannot overlap it.
  CHECK(r.out.cas.empty());
  r.hook_done("replica", 0);
  auto handover = r.cas("handover");
  r.commit(handover);
  CHECK(r.reg->master == MasterEntry{"n2", 2, Phase::designated, 0, 0});
  CHECK(r.reg->replica == ReplicaEntry{"n1", 2});
  CHECK(r.reg->epoch == 2);
  CHECK(r.agent().role() == Role::replica);
  CHECK(r.agent().state() == AgentState::replica);

  // The target's side.
  Rig t("n2");
  t.start(table_with("n1", 1, Phase::established, 9, "n2"));
  t.table(*r.reg);
  CHECK(t.agent().state() == AgentState::broadcasting);
  REQUIRE(t.out.broadcasts.size() == 1);
  CHECK(t.out.broadcasts[0].epoch == 2);
  t.ack("n1", 2);
  t.commit(t.cas("establish"));
  CHECK(t.events() == Strings{"+promoted"});
  CHECK(t.out.changes[0].reason == "switchover");
  CHECK(t.hooks() == Strings{"master"});
  CHECK(t.agent().acting_master(t.now));
}

TEST_CASE("agent: switchover is refused by anyone but the acting master") {
  Rig r("n3");
  r.start(table_with("n1", 2, Phase::established, 1, "n2"));
  r.out.clear();
  CHECK(r.a->switchover("n2", r.now, r.out) == "not the master; master is n1");
  CHECK(r.out.cas.empty());
}

TEST_CASE("agent: a graceful stop releases the master's lease") {
  Rig r("n1");
  make_master_with_replica(r);
  r.out.clear();
  r.a->on_shutdown(r.now, r.out);
  CHECK(!r.agent().acting_master(r.now));
  CHECK(r.events() == Strings{"+shutdown"});
  CHECK(r.hooks() == Strings{"replica"});
  r.commit(r.cas("release"));
  CHECK(r.reg->master->lease_ms == 0);
  CHECK(r.reg->master->node == "n1");
  r.tick(10s);
  CHECK(r.out.cas.empty());
}

TEST_CASE("agent: a 2-member topology without a witness never promotes") {
  Rig r("n1", {"n1", "n2"});
  r.start(std::nullopt);
  CHECK(r.noted("2-member topology"));
  CHECK(!r.agent().automatic_promotion());
  r.tick(10s);
  CHECK(r.out.cas.empty());
  Rig w("n1", {"n1", "n2"});
  w.view["n2"].witness = true;
  w.start(std::nullopt);
  CHECK(w.agent().automatic_promotion());
  w.tick(kHb);
  CHECK(w.cas("claim").purpose == "claim");
}

TEST_CASE("agent: a dead node's designation is claimed after failure + broadcast timeout") {
  Rig r("n3");
  r.start(table_with("n2", 4, Phase::designated, 0, std::nullopt));
  r.set_alive("n2", false);
  // n3 is second of the two live, equally old nodes: three heartbeats after that.
  r.tick(1500ms + 3 * kHb - 1ms);
  CHECK(r.out.cas.empty());
  r.tick(1ms);
  auto claim = r.cas("claim");
  r.commit(claim);
  CHECK(r.reg->master == MasterEntry{"n3", 5, Phase::designated, 0, 0});
  CHECK(r.agent().state() == AgentState::broadcasting);
}

TEST_CASE("agent: a paused master stops acting in the first input after the pause") {
  Rig r("n1");
  make_master_with_replica(r);
  r.table(*r.reg);
  r.tick(3s);  // no inputs for three seconds
  CHECK(r.events() == Strings{"+lease-lost"});
  CHECK(r.hooks() == Strings{"replica"});
  CHECK(r.cas("read").purpose == "read");
  CHECK(r.agent().check_invariants(r.now).empty());
}

TEST_CASE("agent: the last hook always matches the role, through several transitions in a row") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  r.commit(r.cas("designate"));
  r.ack("n3", 4);
  r.commit(r.cas("establish"));
  r.commit(r.cas("appoint-replica"));
  r.table(table_with("n3", 5, Phase::established, 1, "n2"));  // we lost our place
  std::vector<HookRun> all = r.out.hooks;
  r.commit(r.cas("read"));
  for (auto& h : r.out.hooks) all.push_back(h);
  REQUIRE(!all.empty());
  CHECK(all.back().role == r.agent().role());
  CHECK(r.agent().check_invariants(r.now).empty());
}

// --- what the simulation taught: the register's answers are ambiguous ---------------

TEST_CASE("agent: a change function commits our own earlier value as it is (idempotent)") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  auto designate = r.cas("designate");
  auto mine = designate.change(r.reg);  // accepted by a few, then the proposer retries
  REQUIRE(mine);
  CHECK(designate.change(mine) == mine);  // not refused: finished as it is
  RoleTable other = *mine;
  other.replica = ReplicaEntry{"n3", other.epoch};
  other.reason = "someone else";
  CHECK(!designate.change(other));
  // The reason is only words: a value that differs in nothing else is ours.
  RoleTable reworded = *mine;
  reworded.reason = "reworded";
  CHECK(designate.change(reworded) == reworded);
}

TEST_CASE("agent: a confirm read that finds a later renewal judges that one, without writing it back") {
  Rig r("n1", {"n1", "n2", "n3", "n4", "n5"});
  make_replica(r);  // n2 masters at renewal 7; it stays alive in our view
  r.tick(1500ms);   // 1.5 failure timeouts unchanged: the renewal rule
  // The register holds renewal 8: an attempt of n2's that reached a few
  // acceptors (it is cut off from the majority), never pushed to us.
  r.reg = table_with("n2", 3, Phase::established, 8, "n1");
  r.commit(r.cas("confirm"));
  CHECK(r.events() == Strings{"+failover-yielded"});
  CHECK(r.out.cas.empty());  // no read: writing renewal 8 back would commit it
  r.tick(1000ms - 1ms);      // one failure timeout from the read, not 1.5 from our copy
  CHECK(r.out.cas.empty());
  r.tick(1ms);
  r.commit(r.cas("confirm"));  // renewal 8 still: stopped
  CHECK(r.hooks() == Strings{"prepare"});  // reserved (the rig answers reservations)
  r.hook_done("prepare", 0);
  r.commit(r.cas("designate"));  // from exactly the register's entry (renewal 8)
  CHECK(r.agent().state() == AgentState::broadcasting);
  CHECK(r.reg->master == MasterEntry{"n1", 4, Phase::designated, 0, 0});
}

TEST_CASE("agent: a later renewal a read found is judged when its lease ends at the acceptors, drift added") {
  // {lease the answering acceptors still hold, wait until the next confirm}:
  // that lease and 2 x 5% drift, at least half a heartbeat, at most a
  // failure timeout. 0: n2's last attempt (it hears nobody) reached them
  // long ago.
  using Case = std::pair<Duration, Duration>;
  for (auto [left, wait] : {Case{0ms, kHb / 2}, Case{82ms, 91ms}, Case{600ms, 660ms}, Case{990ms, 1000ms}}) {
    CAPTURE(to_ms(left));
    Rig r("n1", {"n1", "n2", "n3", "n4", "n5"});
    make_replica(r);
    r.tick(1500ms);
    r.reg = table_with("n2", 3, Phase::established, 8, "n1");
    r.commit(r.cas("confirm"), 0ms, to_ms(left));
    CHECK(r.events() == Strings{"+failover-yielded"});
    r.tick(wait - 1ms);
    CHECK(r.out.cas.empty());
    r.tick(1ms);  // not a whole failure timeout: it cannot act longer on that renewal
    r.commit(r.cas("confirm"), 0ms, 0);
    CHECK(r.hooks() == Strings{"prepare"});
  }
}

TEST_CASE("agent: a designation refused only because our copy missed the last renewal is retried") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  auto designate = r.cas("designate");
  r.reg = table_with("n2", 3, Phase::established, 8, "n1");  // accepted, never pushed to us
  r.commit(designate);
  CHECK(r.agent().state() == AgentState::designating);
  CHECK(r.noted("our copy had renewal 7 of n2, the register 8"));
  CHECK(r.out.changes.empty());
  auto again = r.cas("designate");  // at once, from the register's entry; no read (it would restart the lease)
  r.commit(again);
  CHECK(r.reg->master == MasterEntry{"n1", 4, Phase::designated, 0, 0});
  CHECK(r.agent().state() == AgentState::broadcasting);
}

TEST_CASE("agent: no quorum right after a retry from a missed renewal is that lease's edge: retried") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  auto designate = r.cas("designate");
  r.reg = table_with("n2", 3, Phase::established, 8, "n1");
  r.commit(designate);
  r.fail(r.cas("designate"), CasOutcome::no_quorum);  // renewal 8's lease still runs at some acceptors
  CHECK(r.agent().state() == AgentState::designating);
  CHECK(r.out.changes.empty());
  r.tick(kHb);
  r.commit(r.cas("designate"));
  CHECK(r.reg->master == MasterEntry{"n1", 4, Phase::designated, 0, 0});
  CHECK(r.agent().state() == AgentState::broadcasting);
}

TEST_CASE("agent: no quorum right after lease_held answers is the lease's edge: retried") {
  Rig r("n1");
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  r.fail(r.cas("designate"), CasOutcome::lease_held);
  r.tick(kHb);
  r.fail(r.cas("designate"), CasOutcome::no_quorum);
  CHECK(r.agent().state() == AgentState::designating);
  r.tick(kHb);
  r.commit(r.cas("designate"));
  CHECK(r.agent().state() == AgentState::broadcasting);
}

TEST_CASE("agent: a designation that surfaces after its CAS failed carries on as that failover") {
  Rig r("n1", {"n1", "n2", "n3", "n4", "n5"});
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  auto designate = r.cas("designate");
  auto mine = designate.change(r.reg);  // accepted by one acceptor only
  r.set_alive("n3", false);  // on a minority side for a moment: the failover is given up
  r.set_alive("n4", false);
  r.fail(designate, CasOutcome::no_quorum);
  CHECK(r.events() == Strings{"+failover-aborted"});
  CHECK(r.hooks() == Strings{"abort"});
  r.set_alive("n3", true);
  r.set_alive("n4", true);
  // Another node's read finishes it: the table now designates us.
  r.reg = mine;
  r.table(*mine);
  CHECK(r.agent().state() == AgentState::broadcasting);
  CHECK(r.noted("committed after all"));
  // Still the failover of n2, so claim 3 applies when n2 comes back.
  r.set_alive("n2", true);
  r.commit(r.cas("hand-back"));
  CHECK(r.reg->master == MasterEntry{"n2", 4, Phase::established, 1000, 8});
  CHECK(r.events() == Strings{"+handed-back"});
}

TEST_CASE("agent: a hand-back without quorum is retried while the old master stays") {
  Rig r("n1", {"n1", "n2", "n3", "n4", "n5"});
  make_replica(r);
  r.set_alive("n2", false);
  r.tick(1s);
  r.hook_done("prepare", 0);
  r.commit(r.cas("designate"));
  r.set_alive("n2", true);
  r.fail(r.cas("hand-back"), CasOutcome::no_quorum);
  CHECK(r.agent().state() == AgentState::broadcasting);
  r.tick(kHb);
  r.commit(r.cas("hand-back"));
  CHECK(r.events() == Strings{"+handed-back"});
}

TEST_CASE("agent: the replica re-reads a designation of a live node that does not move on") {
  // After a switchover the old master is the replica; the target may have
  // missed the commit naming it, and a read pushes the table again.
  Rig r("n1");
  r.start(table_with("n3", 2, Phase::designated, 0, "n1"));
  r.tick(500ms + kHb - 1ms);  // broadcast_timeout + a heartbeat
  CHECK(r.out.cas.empty());
  r.tick(1ms);
  r.commit(r.cas("read"));
  r.tick(kHb);
  CHECK(r.cas("read").purpose == "read");
}

TEST_CASE("agent: a switchover hands over after its step-down hook, even one that failed or was killed") {
  Rig r("n1");
  make_master_with_replica(r);
  r.out.clear();
  REQUIRE(r.a->switchover("n2", r.now, r.out).empty());
  CHECK(r.hooks() == Strings{"replica"});
  auto release = r.cas("release");
  // The hook ends before the release commits: the handover follows the commit.
  r.hook_done("replica", 137);
  CHECK(r.out.cas.empty());
  r.commit(release);
  auto handover = r.cas("handover");
  r.commit(handover);
  CHECK(r.reg->master == MasterEntry{"n2", 2, Phase::designated, 0, 0});
}
