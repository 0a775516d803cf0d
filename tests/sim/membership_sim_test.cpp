// Simulation tests for grid::Membership: 3 and 5 nodes over a lossy,
// reordering SimNetwork, under crashes, restarts, partitions and pauses,
// each scenario over many seeds.
//
// A failure prints the seed and the cluster size; RG_SEED=<seed> runs that
// seed alone (RG_SEEDS=<count> changes how many seeds run), e.g.
//   RG_SEED=42 ./build/tests/rg-sim -tc='*partition*'
#include <doctest/doctest.h>

#include <cstdlib>
#include <memory>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "grid/membership.h"
#include "tests/sim/sim_network.h"

using namespace rg;
using namespace rg::grid;
using namespace rg::sim;
using namespace std::chrono_literals;

namespace {

const MembershipConfig kConfig{};
constexpr Duration kMaxDelay = 20ms;
constexpr double kMaxLoss = 0.2;
// Silence is noticed at the first tick after failure_timeout from the last
// heartbeat (which may land kMaxDelay after the crash), the verdict at the
// first tick after the probe deadline.
const Duration kDetectBound =
    kConfig.failure_timeout + kConfig.probe_timeout + 2 * kConfig.heartbeat_interval + kMaxDelay;
// Once heartbeats flow again one arrives within failure_timeout unless ten in
// a row are lost (0.2^10 per pair).
const Duration kRecoverBound = kConfig.failure_timeout;
const Duration kWarmup = 2s;

// What travels between simulated nodes: heartbeats as datagrams, probes as
// stream messages (a real node probes over TCP).
struct Wire {
  enum class Kind { heartbeat, ping, ack, relay };
  Kind kind = Kind::heartbeat;
  Incarnation incarnation = 0;  // heartbeat: the sender's
  std::string address;          // heartbeat: the sender's listen address
  std::uint64_t fingerprint = 0;
  NodeId prober;  // probes: who ordered it; acks travel back to it
  Incarnation prober_incarnation = 0;
  std::uint64_t nonce = 0;
  NodeId target;  // relay: whom the relaying node pings
};

struct Seen {
  Time at;
  NodeId observer;
  MembershipEvent event;
};

// One simulated process: the core and the little a real node's shell adds
// around it (heartbeats, running probes, timers).
struct SimNode {
  NodeId id;
  std::string address;
  Incarnation incarnation = 1;
  std::unique_ptr<Membership> core;
  bool crashed = false;
  bool paused = false;
  std::map<std::uint64_t, Time> probes;  // nonce -> deadline, not yet answered
  // The view rebuilt from the events alone; must match the core's states.
  std::map<NodeId, std::pair<MemberState, Incarnation>> shadow;
  bool running() const { return !crashed && !paused; }
};

// A cluster of SimNodes over one SimNetwork, for the scenario tests below.
// It checks after every input that each event is a real, legal change and
// that the events replayed give the core's own view; scenario checks add to
// the same list of violations.
class MembershipCluster {
 public:
  MembershipCluster(std::size_t size, std::uint64_t seed) : rng_(seed), net_(clock_, rng_) {
    std::vector<NodeId> ids;
    for (std::size_t i = 1; i <= size; ++i) ids.push_back("n" + std::to_string(i));
    topology_ = Topology(ids);
    start_ = clock_.now();
    net_.set_loss(uniform01(rng_) * kMaxLoss);
    net_.set_delay(0ms, uniform_duration(rng_, 1ms, kMaxDelay));
    for (std::size_t i = 0; i < size; ++i) {
      SimNode& n = nodes_[ids[i]];
      n.id = ids[i];
      n.address = fmt::format("10.0.0.{}:7400", i + 1);
      boot(n);
      // Each node's loop runs at its own phase, as real nodes' would.
      schedule_loop(n.id, start_ + uniform_duration(rng_, 0ms, kConfig.heartbeat_interval));
    }
  }

  std::mt19937_64& rng() { return rng_; }
  Time now() const { return clock_.now(); }
  const std::vector<NodeId>& ids() const { return topology_.members(); }
  const Membership& core(const NodeId& id) const { return *nodes_.at(id).core; }
  const SimNode& node(const NodeId& id) const { return nodes_.at(id); }
  const std::vector<Seen>& seen() const { return seen_; }
  const std::vector<std::string>& violations() const { return violations_; }

  void run_for(Duration d) {
    rg::sim::run_until(now() + d, clock_, net_, timers_,
                       [this](const NodeId& to, const NodeId& from, Wire& w) { deliver(to, from, w); });
  }

  void crash(const NodeId& id) {
    SimNode& n = nodes_.at(id);
    n.crashed = true;
    n.probes.clear();
    net_.set_down(id, true);
  }
  void restart(const NodeId& id) {
    SimNode& n = nodes_.at(id);
    n.crashed = false;
    ++n.incarnation;
    boot(n);
    net_.set_down(id, false);
  }
  void pause(const NodeId& id) {
    nodes_.at(id).paused = true;
    net_.set_down(id, true);
  }
  // The frozen loop wakes up: its overdue timers (the tick, probe deadlines)
  // run at once, in an order an event loop does not promise, so either.
  void resume(const NodeId& id) {
    SimNode& n = nodes_.at(id);
    n.paused = false;
    net_.set_down(id, false);
    bool probes_first = chance(rng_, 0.5);
    if (probes_first) expire_overdue_probes(n);
    n.core->tick(now(), out_);
    apply(n);
    if (!probes_first) expire_overdue_probes(n);
    heartbeat(n);
  }
  void partition(const std::vector<std::vector<NodeId>>& groups) { net_.partition(groups); }
  void heal() { net_.heal(); }

  // The first event of `kind` about `about` that `observer` emitted at or after `since`.
  const Seen* first(const NodeId& observer, MemberEvent kind, const NodeId& about,
                    Time since) const {
    for (const Seen& s : seen_)
      if (s.at >= since && s.observer == observer && s.event.kind == kind && s.event.id == about)
        return &s;
    return nullptr;
  }

  void expect(bool ok, const std::string& what) {
    if (!ok) violation(what);
  }
  void expect_all_running_alive(const char* when) {
    for (const auto& [id, n] : nodes_) {
      if (!n.running()) continue;
      for (const auto& [other, m] : nodes_)
        if (other != id && m.running() && n.core->find(other)->state != MemberState::alive)
          violation(fmt::format("{}: {} sees {} {}", when, id, other,
                                to_string(n.core->find(other)->state)));
    }
  }
  void violation(const std::string& what) {
    if (violations_.size() < 20) violations_.push_back(fmt::format("[t={}ms] {}", ms(now()), what));
  }
  std::int64_t ms(Time t) const { return to_ms(t - start_); }

 private:
  void boot(SimNode& n) {
    n.core = std::make_unique<Membership>(topology_, n.id, n.incarnation, n.address, kConfig, now());
    n.shadow.clear();
    n.probes.clear();
  }

  void schedule_loop(const NodeId& id, Time when) {
    timers_.at(when, [this, id] {
      SimNode& n = nodes_.at(id);
      if (n.running()) {
        n.core->tick(now(), out_);
        apply(n);
        heartbeat(n);
      }
      schedule_loop(id, now() + kConfig.heartbeat_interval);
    });
  }

  // To every member including itself, as multicast loops back.
  void heartbeat(const SimNode& n) {
    Wire w;
    w.incarnation = n.incarnation;
    w.address = n.address;
    w.fingerprint = topology_.fingerprint();
    for (const auto& to : topology_.members()) net_.send(n.id, to, w);
  }

  void deliver(const NodeId& to, const NodeId& from, Wire& w) {
    SimNode& n = nodes_.at(to);
    switch (w.kind) {
      case Wire::Kind::heartbeat: {
        Heard h = n.core->on_heard(from, w.incarnation, w.address, w.fingerprint, now(), out_);
        if (h != Heard::accepted && h != Heard::stale && h != Heard::self)
          violation(fmt::format("{} refused a heartbeat from {} ({})", to, from, static_cast<int>(h)));
        apply(n);
        break;
      }
      case Wire::Kind::ping:
        w.kind = Wire::Kind::ack;
        net_.send(to, from, w, Delivery::stream);
        break;
      case Wire::Kind::relay: {
        NodeId target = w.target;
        w.kind = Wire::Kind::ping;
        net_.send(to, target, w, Delivery::stream);
        break;
      }
      case Wire::Kind::ack:
        if (w.prober != to) {  // we pinged on the prober's behalf
          net_.send(to, w.prober, w, Delivery::stream);
        } else if (w.prober_incarnation == n.incarnation && n.probes.erase(w.nonce)) {
          n.core->on_probe_result(w.nonce, true, now(), out_);
          apply(n);
        }
        break;
    }
  }

  void run_probe(SimNode& n, const ProbeOrder& p) {
    Time deadline = now() + kConfig.probe_timeout;
    n.probes[p.nonce] = deadline;
    Wire w;
    w.kind = p.via.empty() ? Wire::Kind::ping : Wire::Kind::relay;
    w.prober = n.id;
    w.prober_incarnation = n.incarnation;
    w.nonce = p.nonce;
    w.target = p.target;
    net_.send(n.id, p.via.empty() ? p.target : p.via, w, Delivery::stream);
    timers_.at(deadline, [this, id = n.id, inc = n.incarnation, nonce = p.nonce] {
      SimNode& node = nodes_.at(id);
      // A crashed process's timers died with it; a paused one's run on resume.
      if (node.incarnation != inc || !node.running()) return;
      if (node.probes.erase(nonce)) {
        node.core->on_probe_result(nonce, false, now(), out_);
        apply(node);
      }
    });
  }

  void expire_overdue_probes(SimNode& n) {
    std::vector<std::uint64_t> overdue;
    for (const auto& [nonce, deadline] : n.probes)
      if (deadline <= now()) overdue.push_back(nonce);
    for (auto nonce : overdue) {
      n.probes.erase(nonce);
      n.core->on_probe_result(nonce, false, now(), out_);
      apply(n);
    }
  }

  // Drains what the core produced, as the shell would, and checks it.
  void apply(SimNode& n) {
    for (const auto& e : out_.events) {
      check_event(n, e);
      seen_.push_back(Seen{now(), n.id, e});
    }
    for (const auto& p : out_.probes) run_probe(n, p);
    for (const auto& r : out_.refusals)
      violation(fmt::format("{} refused {}: {}", n.id, r.address, r.reason));
    out_.clear();
    for (const auto& [id, m] : n.core->members()) {
      auto [state, inc] = n.shadow.contains(id) ? n.shadow.at(id)
                                                 : std::pair{MemberState::unknown, Incarnation{0}};
      if (state != m.state || (state != MemberState::unknown && inc != m.incarnation))
        violation(fmt::format("{}'s events say {} is {} ({}), its view says {} ({})", n.id, id,
                              to_string(state), inc, to_string(m.state), m.incarnation));
    }
  }

  void check_event(SimNode& n, const MembershipEvent& e) {
    auto& [state, inc] = n.shadow.try_emplace(e.id, MemberState::unknown, 0).first->second;
    bool same = e.incarnation == inc;
    bool legal = false;
    MemberState next = MemberState::alive;
    switch (e.kind) {
      case MemberEvent::joined:
        legal = state == MemberState::unknown || state == MemberState::left || e.incarnation > inc;
        break;
      case MemberEvent::suspected:
        legal = state == MemberState::alive && same;
        next = MemberState::suspected;
        break;
      case MemberEvent::failed:
        legal = state == MemberState::suspected && same;
        next = MemberState::failed;
        break;
      case MemberEvent::restored:
        legal = (state == MemberState::suspected || state == MemberState::failed) && same;
        break;
      case MemberEvent::left:
        legal = state != MemberState::unknown && e.incarnation >= inc &&
                (state != MemberState::left || e.incarnation > inc);
        next = MemberState::left;
        break;
    }
    if (!legal)
      violation(fmt::format("{} emitted {} {} ({}) while it had it {} ({})", n.id,
                            to_string(e.kind), e.id, e.incarnation, to_string(state), inc));
    state = next;
    inc = e.incarnation;
  }

  std::mt19937_64 rng_;
  SimClock clock_;
  SimTimers timers_;
  SimNetwork<Wire> net_;
  Topology topology_;
  Time start_{};
  std::map<NodeId, SimNode> nodes_;
  MembershipOutput out_;
  std::vector<Seen> seen_;
  std::vector<std::string> violations_;
};

// ---------------------------------------------------------------------------
// Scenarios: each builds a cluster from a seed, runs it, returns violations.

using Violations = std::vector<std::string>;

NodeId pick(std::mt19937_64& rng, const std::vector<NodeId>& from) {
  return from[uniform(rng, 0, from.size() - 1)];
}

void expect_no_failed_about(MembershipCluster& c, const std::set<NodeId>& healthy) {
  for (const Seen& s : c.seen())
    if (s.event.kind == MemberEvent::failed && healthy.contains(s.event.id))
      c.violation(fmt::format("{} declared healthy {} failed at {}ms", s.observer, s.event.id,
                              c.ms(s.at)));
}

Violations no_faults(std::size_t size, std::uint64_t seed) {
  MembershipCluster c(size, seed);
  c.run_for(kWarmup);
  c.expect_all_running_alive("after warmup");
  c.run_for(8s);
  expect_no_failed_about(c, std::set<NodeId>(c.ids().begin(), c.ids().end()));
  c.expect_all_running_alive("at the end");
  return c.violations();
}

Violations crash_and_restart(std::size_t size, std::uint64_t seed) {
  MembershipCluster c(size, seed);
  auto& rng = c.rng();
  c.run_for(kWarmup);
  c.expect_all_running_alive("after warmup");

  std::vector<NodeId> victims{pick(rng, c.ids())};
  if (size >= 5 && chance(rng, 0.5)) {
    NodeId second = pick(rng, c.ids());
    if (second != victims[0]) victims.push_back(second);
  }
  std::map<NodeId, Time> crashed_at;
  for (const auto& v : victims) {
    c.run_for(uniform_duration(rng, 0ms, 300ms));
    c.crash(v);
    crashed_at[v] = c.now();
  }
  std::set<NodeId> live;
  for (const auto& id : c.ids())
    if (!crashed_at.contains(id)) live.insert(id);

  // Long enough down to be detected in some runs, back before that in others.
  c.run_for(uniform_duration(rng, 100ms, 3s));
  for (const auto& [v, t] : crashed_at) {
    if (c.now() - t < kDetectBound) continue;
    for (const auto& o : live) {
      const Seen* f = c.first(o, MemberEvent::failed, v, t);
      c.expect(f && f->at - t <= kDetectBound,
               fmt::format("{} did not see crashed {} failed within {}ms", o, v, to_ms(kDetectBound)));
    }
  }

  std::map<NodeId, Time> restarted_at;
  for (const auto& v : victims) {
    c.restart(v);
    restarted_at[v] = c.now();
  }
  c.run_for(kRecoverBound + 500ms);
  for (const auto& [v, t] : restarted_at) {
    Incarnation fresh = c.node(v).incarnation;
    for (const auto& o : c.ids()) {
      if (o == v) continue;
      const Seen* j = c.first(o, MemberEvent::joined, v, t);
      c.expect(j && j->event.incarnation == fresh && j->at - t <= kRecoverBound,
               fmt::format("{} did not see {} join with incarnation {} within {}ms", o, v, fresh,
                           to_ms(kRecoverBound)));
    }
  }
  expect_no_failed_about(c, live);
  c.expect_all_running_alive("at the end");
  return c.violations();
}

Violations partition_and_heal(std::size_t size, std::uint64_t seed) {
  MembershipCluster c(size, seed);
  auto& rng = c.rng();
  c.run_for(kWarmup);
  c.expect_all_running_alive("after warmup");

  std::map<NodeId, int> side;
  for (const auto& id : c.ids()) side[id] = static_cast<int>(uniform(rng, 0, 1));
  side[c.ids()[0]] = 0;  // both sides non-empty
  std::vector<NodeId> rest(c.ids().begin() + 1, c.ids().end());
  side[pick(rng, rest)] = 1;
  std::vector<std::vector<NodeId>> groups(2);
  for (const auto& [id, s] : side) groups[s].push_back(id);

  Time cut = c.now();
  c.partition(groups);
  c.run_for(kDetectBound + 200ms);
  for (const auto& o : c.ids())
    for (const auto& x : c.ids()) {
      if (side[o] == side[x]) continue;
      const Seen* f = c.first(o, MemberEvent::failed, x, cut);
      c.expect(f && f->at - cut <= kDetectBound &&
                   c.core(o).find(x)->state == MemberState::failed,
               fmt::format("{} did not see {} across the partition failed within {}ms", o, x,
                           to_ms(kDetectBound)));
    }

  Time healed = c.now();
  c.heal();
  c.run_for(kRecoverBound + 500ms);
  for (const auto& o : c.ids())
    for (const auto& x : c.ids()) {
      if (side[o] == side[x]) continue;
      const Seen* r = c.first(o, MemberEvent::restored, x, healed);
      c.expect(r && r->at - healed <= kRecoverBound,
               fmt::format("{} did not see {} restored within {}ms of the heal", o, x,
                           to_ms(kRecoverBound)));
    }
  for (const Seen& s : c.seen())
    if (s.event.kind == MemberEvent::failed &&
        (side[s.observer] == side[s.event.id] || s.at < cut || s.at > healed))
      c.violation(fmt::format("{} declared {} failed at {}ms", s.observer, s.event.id, c.ms(s.at)));
  c.expect_all_running_alive("at the end");
  return c.violations();
}

Violations pause_and_resume(std::size_t size, std::uint64_t seed) {
  MembershipCluster c(size, seed);
  auto& rng = c.rng();
  c.run_for(kWarmup);
  c.expect_all_running_alive("after warmup");

  NodeId paused = pick(rng, c.ids());
  Time frozen = c.now();
  c.pause(paused);
  c.run_for(uniform_duration(rng, kConfig.failure_timeout + 100ms, 3 * kConfig.failure_timeout));
  Time resumed = c.now();
  c.resume(paused);
  c.expect(c.core(paused).tilt_count() == 1,
           fmt::format("{} did not enter TILT on resume after {}ms", paused, to_ms(resumed - frozen)));
  c.run_for(kRecoverBound + 500ms);

  for (const Seen& s : c.seen()) {
    if (s.event.kind == MemberEvent::failed && (s.observer == paused || s.event.id != paused))
      c.violation(fmt::format("{} declared {} failed at {}ms", s.observer, s.event.id, c.ms(s.at)));
    // Its own stall made everyone look silent: TILT must not even suspect.
    if (s.event.kind == MemberEvent::suspected && s.observer == paused &&
        s.at - resumed <= kConfig.failure_timeout)
      c.violation(fmt::format("{} suspected {} {}ms after its resume", paused, s.event.id,
                              to_ms(s.at - resumed)));
  }
  for (const auto& o : c.ids()) {
    if (o == paused) continue;
    // Whoever doubted it while it was frozen must take it back.
    bool doubted = c.first(o, MemberEvent::suspected, paused, frozen) != nullptr;
    const Seen* r = c.first(o, MemberEvent::restored, paused, resumed);
    c.expect(!doubted || (r && r->at - resumed <= kRecoverBound),
             fmt::format("{} did not see {} restored within {}ms of its resume", o, paused,
                         to_ms(kRecoverBound)));
  }
  c.expect(!c.core(paused).tilted(), fmt::format("{} is still in TILT", paused));
  c.expect_all_running_alive("at the end");
  return c.violations();
}

// ---------------------------------------------------------------------------

// Seeds per scenario and cluster size; the whole run stays within seconds.
constexpr std::size_t kSeeds = 500;


// The core logs TILT at info; hundreds of runs would bury a failure's output.
struct QuietLogs {
  spdlog::level::level_enum saved = spdlog::get_level();
  QuietLogs() { spdlog::set_level(spdlog::level::warn); }
  ~QuietLogs() { spdlog::set_level(saved); }
};

void run_scenario(Violations (*scenario)(std::size_t, std::uint64_t), std::size_t runs) {
  QuietLogs quiet;
  for (std::size_t size : {3, 5})
    for (auto seed : rg::sim::seeds(runs)) {
      Violations v = scenario(size, seed);
      std::ostringstream why;
      for (const auto& line : v) why << "\n  " << line;
      CHECK_MESSAGE(v.empty(), "seed " << seed << ", " << size << " nodes (replay: RG_SEED=" << seed
                                       << ")" << why.str());
    }
}

}  // namespace

TEST_CASE("membership sim: no faults but loss and delay, nobody is declared failed") {
  run_scenario(no_faults, kSeeds);
}

TEST_CASE("membership sim: crashed nodes are declared failed, restarted ones join again") {
  run_scenario(crash_and_restart, kSeeds);
}

TEST_CASE("membership sim: a partition fails members across it, healing restores them") {
  run_scenario(partition_and_heal, kSeeds);
}

TEST_CASE("membership sim: a paused node enters TILT and accuses nobody") {
  run_scenario(pause_and_resume, kSeeds);
}
