// Simulation tests for the quorum register (grid/quorum.h,
// grid/acceptor_host.h): 3 and 5 members, each with an acceptor host, a
// proposer and a local copy, whose proposers all increment one counter key
// by compare-and-set, over a lossy, reordering SimNetwork (every Paxos
// message is a datagram) that also duplicates datagrams, delivers some of
// them seconds late, loses one direction of a link, and holds a paused
// node's messages until it resumes. Each node's clock runs at its own rate.
// Nodes crash and restart: with durable state (the data dir, simulated in
// memory) the acceptor comes back intact; in in-memory mode it forgets
// everything and recovers under AcceptorHost's rules (at most a minority is
// recovering at once; more would leave nothing to recover from). With
// durable state, one crash in four also loses the data dir (the node then
// recovers the same way), and a data dir refuses writes for a while (a
// disk fault), the node perhaps crashing meanwhile.
//
// The register's value is "<count> <tag>": the tag names the attempt that
// made it and records which value it was made from, so the history can be
// rebuilt after the run. An oracle watches every acceptance and knows which
// (ballot, value) a majority of acceptors accepted and still remember
// ("chosen"), independent of what the proposers report.
//
// Checked after every event at a node: its acceptor's promise never goes
// below its accepted ballot, and neither goes back within a life; its data
// dir never goes back across lives; every vote comes from a voting
// acceptor and, with durable state, leaves only once the data dir holds it.
// A planted bug (an acceptor voting from state it could not save) shows
// that these checks fail when they should. (The recovery rules' own planted
// bugs are caught by tests/unit/acceptor_host_test.cpp: here the rules'
// margins make them almost never matter.)
//
// A failure prints the seed and the cluster size; RG_SEED=<seed> runs that
// seed alone (RG_SEEDS=<count> changes how many seeds run; RG_DEBUG=1 says
// why member changes failed and, in a run where no increment committed,
// how each operation ended), e.g.
//   RG_SEED=42 ./build/tests/rg-sim -tc='*quorum sim*lease*'
#include <doctest/doctest.h>

#include <cstdlib>
#include <memory>
#include <set>
#include <sstream>
#include <variant>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "grid/acceptor_host.h"
#include "grid/member_change.h"
#include "grid/quorum.h"
#include "tests/sim/mem_store.h"
#include "tests/sim/sim_network.h"

using namespace rg;
using namespace rg::grid;
using namespace rg::sim;
using namespace std::chrono_literals;

namespace {

const std::string kKey = "counter";
constexpr Duration kTick = 5ms;
constexpr std::int64_t kLeaseMs = 150;
constexpr Duration kWorkload = 2500ms;
constexpr Duration kSettle = 1500ms;

// Asks a peer for its commit of `cluster/members` (a proposer was refused
// for a newer configuration); the answer is that QCommit.
// A node refused as stale asks the refuser for its configuration; the
// answer is the configuration it uses (it knows that one committed: it
// adopted it from a commit, or recovered it from its peers' answers).
struct ConfigAsk {};
struct ConfigTell {
  Topology config;
};
using Wire = std::variant<QPrepare, QPromise, QAccept, QAccepted, QCommit, QRecoverRequest, QRecoverState, ConfigAsk,
                          ConfigTell>;
constexpr Duration kProposerTimeout = 500ms;
constexpr std::size_t kPool = 5;  // processes in a member-change run
// Rule 1's wait: above the proposer's deadline at any two clock rates here.
constexpr Duration kRecoveryWait = 2 * kProposerTimeout;
constexpr double kMaxRateSkew = 0.02;  // each clock runs at 1 +- this
using Violations = std::vector<std::string>;

struct Parsed {
  std::uint64_t count = 0;
  std::string tag = "-";  // "-": the empty register
};
Parsed parse(const std::optional<RegValue>& v) {
  Parsed p;
  if (!v) return p;
  auto space = v->data.find(' ');
  p.count = std::stoull(v->data.substr(0, space));
  p.tag = v->data.substr(space + 1);
  return p;
}

// One application of a change function: the value it made and its parent.
struct Created {
  std::uint64_t count = 0;
  std::string parent;
  std::uint64_t client = 0;  // the ClientOp that called cas()
};

// One cas() issued by the workload, and how it ended.
struct ClientOp {
  NodeId node;
  Time started{};
  bool read = false;  // an identity read, not an increment
  bool last = false;  // the final read: the workload stops
  bool done = false;
  CasOutcome outcome = CasOutcome::no_quorum;
  std::optional<RegValue> value;
  std::string reason;
};

// The oracle's view of one ballot. `by` are the acceptors that accepted it
// and still remember it (an in-memory acceptor that restarts forgets);
// `ever` every acceptance, which is what a proposer may have counted.
struct Acceptance {
  RegValue value;
  ConfigTag config;  // what the proposer counted its majority in
  std::set<NodeId> by, ever;
  bool chosen = false;
  Time chosen_at{};
};

// Totals over a scenario's runs, printed with RG_STATS=1.
struct SimStats {
  std::uint64_t committed = 0, maybe = 0, unknown_taken = 0;
};
SimStats stats;

// The highest promise and acceptance of one key seen so far.
struct Seen {
  Ballot promised, accepted;
};

// A planted bug for the checks to catch (never set in the product):
// AcceptorHostConfig::plant.vote_unsaved.
struct SimPlants {
  bool vote_unsaved = false;
  bool recover_one_config = false;  // AcceptorHostConfig::Plants::recover_one_config
};

struct SimNode {
  NodeId id;
  NodeClock clock;
  MemStore disk;
  std::unique_ptr<AcceptorHost> host;
  std::unique_ptr<QuorumProposer> proposer;
  QuorumCopy copy;
  bool paused = false, crashed = false;
  bool forgot = false;  // the last crash lost the acceptor's state (in memory, or the data dir lost)
  std::uint64_t life = 0;  // timers of an earlier life do nothing
  std::map<std::uint64_t, std::uint64_t> client_of;  // proposer op id -> ClientOp
  std::map<std::string, Seen> seen_memory;  // this life's acceptor
  std::map<std::string, Seen> seen_disk;    // the data dir, over every life
  Time disk_fault_until{};
  Topology config;  // adopted, and durable (member changes run with durable state only)
  std::unique_ptr<MemberChange> change;  // a member change this node runs as the operator
  bool change_ended = false;             // counted done or failed
  bool wipe_pending = false;             // removed: its data dir still holds slots it forgot
};

// A cluster of SimNodes on one SimNetwork, with the workload, the faults and
// the checks. `leases`: the workload takes, renews and releases leases.
// `reconfig`: five processes, of which the first `size` are the members at
// first; an operator at one member changes them one at a time (MemberChange)
// between 3 and 5 while the workload and the faults go on.
class QuorumCluster {
 public:
  QuorumCluster(std::size_t size, std::uint64_t seed, bool leases, bool durable, SimPlants plants = {},
                bool reconfig = false)
      : leases_(leases), durable_(durable), reconfig_(reconfig), plants_(plants), rng_(seed), net_(clock_, rng_) {
    std::vector<NodeId> ids;
    for (std::size_t i = 1; i <= size; ++i) ids.push_back("n" + std::to_string(i));
    topology_ = Topology(ids);
    configs_[tag_of(topology_)] = topology_;
    if (reconfig_) {
      sparse_ = chance(rng_, 0.5);
      for (std::size_t i = size + 1; i <= kPool; ++i) ids.push_back("n" + std::to_string(i));
      size = ids.size();
    }
    pool_ = ids;
    start_ = clock_.now();
    net_.set_loss(uniform01(rng_) * 0.15);
    net_.set_delay(0ms, uniform_duration(rng_, 1ms, 20ms));
    // Half the runs also duplicate datagrams and deliver some of them up to
    // several lease lengths late, and some up to 1.5 recovery waits late:
    // past every proposer's deadline and past a restarted acceptor's
    // recovery.
    crash_after_accept_ = chance(rng_, 0.5) ? uniform01(rng_) * 0.05 : 0.0;
    if (chance(rng_, 0.5)) {
      net_.set_duplicate(uniform01(rng_) * 0.1);
      Duration longest = chance(rng_, 0.5) ? 5 * milliseconds(kLeaseMs) : kRecoveryWait * 3 / 2;
      net_.set_long_delay(uniform01(rng_) * 0.03, uniform_duration(rng_, 100ms, longest));
    }
    for (std::size_t i = 0; i < size; ++i) {
      SimNode& n = nodes_[ids[i]];
      n.id = ids[i];
      n.clock = NodeClock(start_, 1.0 + (2 * uniform01(rng_) - 1) * kMaxRateSkew);
      max_rate_ = std::max(max_rate_, n.clock.rate());
      // A running cluster: every acceptor starts ready (state loaded intact).
      n.config = topology_;
      boot(n, DurableState{});
      timers_.at(start_ + uniform_duration(rng_, 0ms, 20ms), [this, id = n.id] { issue(id); });
    }
    timers_.at(start_ + uniform_duration(rng_, 100ms, 400ms), [this] { chaos(); });
    if (reconfig_) timers_.at(start_ + uniform_duration(rng_, 50ms, 200ms), [this] { operate(); });
  }

  // Member changes done (settled) and given up, for the scenario's figures.
  std::size_t changes_done() const { return changes_done_; }
  std::size_t changes_failed() const { return changes_failed_; }
  // Acceptors that lost their state and recovered into a configuration
  // newer than their `--members` list.
  std::size_t recovered_across() const { return recovered_across_; }

  // The workload under faults, then calm, then one read at a majority.
  Violations run() {
    run_for(kWorkload);
    stopped_ = true;
    net_.heal();
    net_.unblock_all();
    for (auto& [id, n] : nodes_) {
      n.disk.failing = false;
      if (n.paused) resume(id);
      if (n.crashed) restart(id);
    }
    run_for(kSettle);
    std::optional<std::uint64_t> read;
    for (int attempt = 0; attempt < 5 && !read; ++attempt) {
      read = read_final();
      run_for(kSettle);
    }

    if (!read) {
      if (std::getenv("RG_DEBUG"))
        for (auto& [id, n] : nodes_)
          MESSAGE(id << " config v" << n.config.version() << " " << fmt::format("{}", fmt::join(n.config.members(), ","))
                     << " host v" << n.host->topology().version() << " seen v" << n.host->acceptor().config_seen().version
                     << " " << n.host->progress(local(n)) << std::string(n.proposer ? " proposer" : ""));
      violation("the final read never committed");
      return violations_;
    }
    check_history(*read);
    if (leases_) check_leases();
    return violations_;
  }

 private:
  Time now() const { return clock_.now(); }
  std::int64_t ms(Time t) const { return to_ms(t - start_); }
  void violation(const std::string& what) {
    if (violations_.size() < 20) violations_.push_back(fmt::format("[t={}ms] {}", ms(now()), what));
  }
  void run_for(Duration d) {
    rg::sim::run_until(now() + d, clock_, net_, timers_,
                       [this](const NodeId& to, const NodeId& from, Wire& w) { deliver(to, from, w); });
  }

  Time local(const SimNode& n) const { return n.clock.local(now()); }

  // A process starts: its acceptor host (ready with `loaded`, else
  // recovering), a new proposer whose ballots start above its earlier
  // life's, and its loop.
  void boot(SimNode& n, std::optional<DurableState> loaded) {
    AcceptorHostConfig hc;
    hc.topology = n.config;
    hc.self = n.id;
    hc.recovery_wait = kRecoveryWait;
    hc.retry_interval = 50ms;
    hc.plant.vote_unsaved = plants_.vote_unsaved;
    hc.plant.recover_one_config = plants_.recover_one_config;
    n.host = std::make_unique<AcceptorHost>(hc, durable_ ? &n.disk : nullptr, std::move(loaded), local(n), rng_());
    // Discovery: a recovering node hears every live process of the cluster.
    for (const auto& id : pool_) n.host->heard(id);
    QuorumProposerConfig config = proposer_config();
    n.proposer = n.config.contains(n.id) ? std::make_unique<QuorumProposer>(n.config, n.id, config) : nullptr;
    n.copy = QuorumCopy{};
    n.client_of.clear();
    n.seen_memory.clear();
    loop(n.id, n.life, now() + uniform_duration(rng_, 0ms, kTick));
  }

  // A new proposer's: its ballots start above any earlier life's.
  QuorumProposerConfig proposer_config() {
    QuorumProposerConfig config;
    config.timeout = kProposerTimeout;
    config.seed = rng_();
    config.ballot_floor = static_cast<std::uint64_t>(to_us(now() - Time{}));  // the incarnation
    return config;
  }

  // The shell's loop: ticks the proposer and the acceptor host while the
  // process runs, and sends its recovery requests.
  void loop(const NodeId& id, std::uint64_t life, Time when) {
    timers_.at(when, [this, id, life] {
      SimNode& n = nodes_.at(id);
      if (n.crashed || n.life != life) return;
      if (!n.paused) {
        n.host->tick(local(n));
        for (const auto& to : n.host->requests_due(local(n))) net_.send(n.id, to, n.host->request());
        for (auto& [to, a] : n.host->answers_due()) net_.send(n.id, to, std::move(a));
        if (n.proposer) n.proposer->tick(local(n), out_);
        if (n.change && n.proposer) n.change->tick(*n.proposer, local(n), out_);
        route(n);
        check_acceptor(n);
      }
      loop(id, life, now() + kTick);
    });
  }

  void issue(const NodeId& id) {
    if (stopped_) return;
    SimNode& n = nodes_.at(id);
    // A process outside its configuration (not added yet, or removed) waits.
    if (n.paused || n.crashed || !n.proposer || !n.config.contains(id))
      return timers_.at(now() + 10ms, [this, id] { issue(id); });
    std::uint64_t client = clients_.size();
    if (leases_ && chance(rng_, 0.15)) {
      // A read writes back what it finds: a lease holder's value accepted by
      // a few is then chosen by the reader's write, which must hold the
      // lease as long as the acceptors it found it at (the lease check).
      clients_.push_back(ClientOp{id, now(), true, false, false, CasOutcome::no_quorum, std::nullopt, {}});
      auto same = [](const std::optional<RegValue>& cur) { return cur; };
      n.client_of[n.proposer->cas(kKey, same, local(n), out_)] = client;
      return route(n);
    }
    clients_.push_back(ClientOp{id, now(), false, false, false, CasOutcome::no_quorum, std::nullopt, {}});
    double roll = uniform01(rng_);
    auto attempts = std::make_shared<int>(0);
    QuorumProposer::Change change = [this, id, client, roll, attempts](const std::optional<RegValue>& cur) {
      Parsed p = parse(cur);
      std::string tag = fmt::format("{}.{}.{}", id, client, ++*attempts);
      created_[tag] = Created{p.count + 1, p.tag, client};
      LeaseTag old = cur ? cur->lease : LeaseTag{};
      LeaseTag lease;
      if (leases_ && old.holder == id) {
        lease = LeaseTag{id, old.epoch, roll < 0.8 ? kLeaseMs : 0};  // renew, or release
        if (lease.lease_ms == 0) releases_.emplace(std::pair{id, old.epoch}, now());
      } else if (leases_ && roll < 0.4) {
        lease = LeaseTag{id, old.epoch + 1, kLeaseMs};  // take over
      } else {
        lease = LeaseTag{"", old.epoch, 0};
      }
      return RegValue{fmt::format("{} {}", p.count + 1, tag), lease};
    };
    // The holder's renewals count their lease from the operation's start.
    n.client_of[n.proposer->cas(kKey, std::move(change), local(n), out_, CasMode::holds_lease)] = client;
    route(n);
    // Now and then a second operation queues behind the first.
    if (chance(rng_, 0.05)) timers_.at(now(), [this, id] { issue(id); });
  }

  // Reads by writing back the current value unchanged (nothing if empty).
  std::optional<std::uint64_t> read_final() {
    SimNode* newest = nullptr;  // a member of the newest configuration
    for (auto& [id, n] : nodes_)
      if (n.proposer && n.config.contains(id) && (!newest || newest->config.version() < n.config.version()))
        newest = &n;
    SimNode& n = newest ? *newest : nodes_.begin()->second;
    std::uint64_t client = clients_.size();
    clients_.push_back(ClientOp{n.id, now(), true, true, false, CasOutcome::no_quorum, std::nullopt, {}});
    auto same = [](const std::optional<RegValue>& cur) { return cur; };
    n.client_of[n.proposer->cas(kKey, same, local(n), out_)] = client;
    route(n);
    run_for(1s);
    const ClientOp& c = clients_[client];
    if (!c.done) return std::nullopt;
    if (c.outcome == CasOutcome::precondition_failed && !c.value) return 0;  // empty register
    if (c.outcome != CasOutcome::committed) return std::nullopt;
    final_tag_ = parse(c.value).tag;
    return parse(c.value).count;
  }

  // Faults, one every 100-500 ms while the workload runs: pause a node (in
  // the lease runs, half the time the latest lease holder), split the
  // cluster in two, lose one direction of a link, fail a node's data dir
  // for a while (durable state), or crash a node and restart it later.
  void chaos() {
    if (stopped_) return;
    double roll = uniform01(rng_);
    NodeId victim = pool_[uniform(rng_, 0, pool_.size() - 1)];
    if (leases_ && !latest_holder_.empty() && chance(rng_, 0.5)) victim = latest_holder_;
    if (roll < 0.3) {
      if (!nodes_.at(victim).paused && !nodes_.at(victim).crashed) {
        nodes_.at(victim).paused = true;
        net_.set_paused(victim, true);
        timers_.at(now() + uniform_duration(rng_, 50ms, 600ms), [this, victim] {
          if (nodes_.at(victim).paused) resume(victim);
        });
      }
    } else if (roll < 0.6) {
      std::vector<NodeId> ids = pool_;
      for (std::size_t i = ids.size() - 1; i > 0; --i) std::swap(ids[i], ids[uniform(rng_, 0, i)]);
      auto cut = static_cast<std::ptrdiff_t>(uniform(rng_, 1, ids.size() - 1));
      net_.partition({{ids.begin(), ids.begin() + cut}, {ids.begin() + cut, ids.end()}});
      std::uint64_t generation = ++partition_generation_;
      timers_.at(now() + uniform_duration(rng_, 100ms, 1000ms), [this, generation] {
        if (generation == partition_generation_) net_.heal();
      });
    } else if (roll < 0.7) {
      NodeId other = pool_[uniform(rng_, 0, pool_.size() - 1)];
      if (other != victim) net_.block(victim, other);
      timers_.at(now() + uniform_duration(rng_, 100ms, 1000ms), [this] { net_.unblock_all(); });
    } else if (durable_ && roll < 0.85) {
      disk_fault(victim, uniform_duration(rng_, 20ms, 400ms));
    } else {
      // With durable state, one crash in four also loses the data dir.
      bool forgets = !durable_ || chance(rng_, 0.25);
      if (can_crash(victim, forgets)) {
        crash(victim, forgets);
        timers_.at(now() + uniform_duration(rng_, 10ms, 800ms), [this, victim] { restart(victim); });
      }
    }
    timers_.at(now() + uniform_duration(rng_, 100ms, 500ms), [this] { chaos(); });
  }

  // The data dir refuses every save until `length` has passed (the node may
  // crash and restart meanwhile: the disk stays faulty).
  void disk_fault(const NodeId& id, Duration length) {
    SimNode& n = nodes_.at(id);
    n.disk.failing = true;
    n.disk_fault_until = std::max(n.disk_fault_until, now() + length);
    timers_.at(now() + length, [this, id] {
      SimNode& n = nodes_.at(id);
      if (now() >= n.disk_fault_until) n.disk.failing = false;
    });
  }

  // Durable state survives a crash; an acceptor that forgets (in memory, or
  // its data dir lost) recovers, and more than a minority recovering at
  // once would leave nothing to recover from.
  bool can_crash(const NodeId& id, bool forgets) const {
    const SimNode& n = nodes_.at(id);
    if (n.crashed || n.paused) return false;
    if (!forgets) return true;
    std::size_t out = 1;
    for (const auto& [other, o] : nodes_)
      if (other != id && ((o.crashed && o.forgot) || (!o.crashed && !o.host->ready()))) ++out;
    return out <= topology_.size() - topology_.quorum();
  }

  void crash(const NodeId& id, bool forgets) {
    SimNode& n = nodes_.at(id);
    n.crashed = true;
    n.forgot = forgets;
    ++n.life;
    n.change.reset();  // an operator's change dies with it; the next one settles it
    net_.set_down(id, true);
    // Its proposer's operations are lost with it; an acceptor that forgets
    // what it accepted no longer counts for the oracle.
    if (!forgets) return;
    for (auto& [key, ballots] : oracle_)
      for (auto& [b, a] : ballots) a.by.erase(id);
    n.disk.saved.reset();
    n.seen_disk.clear();
    // The data dir held the configuration too: the process comes back with
    // its `--members` list (the first configuration) and recovers.
    n.config = topology_;
    n.wipe_pending = false;
  }

  void restart(const NodeId& id) {
    SimNode& n = nodes_.at(id);
    if (!n.crashed) return;
    n.crashed = false;
    net_.set_down(id, false);
    std::optional<DurableState> loaded = durable_ ? n.disk.saved : std::nullopt;
    // Removed, and the save of its forgetting failed: the node's data dir
    // holds its configuration and its slots in one file, so it comes back
    // with both forgotten (SimNode::config stands for that file's
    // configuration).
    if (loaded && n.wipe_pending) loaded->slots.clear();
    boot(n, std::move(loaded));
    timers_.at(now() + uniform_duration(rng_, 0ms, 20ms), [this, id] { issue(id); });
  }

  // A paused process keeps its memory; its overdue tick runs at once, and
  // what arrived meanwhile is delivered.
  void resume(const NodeId& id) {
    SimNode& n = nodes_.at(id);
    n.paused = false;
    net_.set_paused(id, false);
    if (n.proposer) n.proposer->tick(local(n), out_);
    route(n);
  }

  // What the shell does with a proposer's output: `to` empty is everyone,
  // ourselves included (through the network too, for simplicity).
  void route(SimNode& n) {
    for (const auto& s : out_.sends) {
      Wire w = std::visit([](const auto& m) { return Wire(m); }, s.msg);
      if (s.to.empty()) {
        for (const auto& to : n.proposer->topology().members()) net_.send(n.id, to, w);
      } else {
        net_.send(n.id, s.to, w);
      }
    }
    for (const auto& st : out_.stale) net_.send(n.id, st.from, Wire(ConfigAsk{}));
    std::vector<CasResult> results = std::move(out_.results);
    out_.clear();
    for (const auto& r : results) {
      if (n.client_of.contains(r.op) || !n.change) {
        finished(n, r);
        continue;
      }
      n.change->on_result(r, *n.proposer, local(n), out_);
      if (auto rec = n.change->take_adopt()) adopt(n, config_to_register(*rec));
      change_progress(n);
      route(n);  // what the operator's next step asked for
    }
  }

  void finished(SimNode& n, const CasResult& r) {
    auto it = n.client_of.find(r.op);
    if (it == n.client_of.end()) return violation(fmt::format("{}: result for unknown op {}", n.id, r.op));
    ClientOp& c = clients_[it->second];
    n.client_of.erase(it);
    if (c.done) return violation(fmt::format("{}: two results for op {}", n.id, r.op));
    c.done = true;
    c.outcome = r.outcome;
    c.value = r.value;
    c.reason = r.reason;
    if (r.started != n.clock.local(c.started)) violation(fmt::format("{}: op {} started at the wrong time", n.id, r.op));
    if (r.outcome == CasOutcome::committed) {
      // A proposer may count the vote of an acceptor that has since crashed
      // and forgotten it: every acceptance counts here.
      bool accepted = false;
      for (const auto& [b, a] : oracle_[kKey]) accepted = accepted || (a.value == *r.value && majority(a, a.ever));
      if (!accepted) violation(fmt::format("{}: committed '{}' which no majority accepted", n.id, r.value->data));
    }
    if (!c.last) timers_.at(now() + think_time(), [this, id = n.id] { issue(id); });
  }

  void deliver(const NodeId& to, const NodeId& from, Wire& w) {
    SimNode& n = nodes_.at(to);
    Time t = local(n);
    const bool was_voting = n.host->voting();
    if (const auto* m = std::get_if<QPrepare>(&w)) {
      auto p = n.host->on_prepare(*m, t);
      check_acceptor(n);
      if (!p) return;
      check_vote(n, was_voting, m->key, m->ballot, p->ok, false);
      net_.send(to, from, *p);
    } else if (const auto* m = std::get_if<QAccept>(&w)) {
      auto a = n.host->on_accept(*m, t);
      check_acceptor(n);
      if (!a) return;
      check_vote(n, was_voting, m->key, m->ballot, a->verdict == AcceptVerdict::ok, true);
      if (a->verdict == AcceptVerdict::ok) accepted(to, *m);
      net_.send(to, from, *a);
      // The worst moment to crash: its vote is on its way and may still be
      // counted, and (in memory) the acceptor forgets it.
      if (a->verdict == AcceptVerdict::ok && !stopped_ && chance(rng_, crash_after_accept_) &&
          can_crash(to, !durable_)) {
        crash(to, !durable_);
        timers_.at(now() + uniform_duration(rng_, 1ms, 100ms), [this, to] { restart(to); });
      }
    } else if (const auto* m = std::get_if<QPromise>(&w)) {
      if (!n.proposer) return;  // a late answer to a process removed since
      n.proposer->on_promise(from, *m, t, out_);
      route(n);
    } else if (const auto* m = std::get_if<QAccepted>(&w)) {
      if (!n.proposer) return;
      n.proposer->on_accepted(from, *m, t, out_);
      route(n);
    } else if (const auto* m = std::get_if<QCommit>(&w)) {
      commit_arrived(n, *m);
    } else if (const auto* m = std::get_if<QRecoverRequest>(&w)) {
      if (auto a = n.host->on_recover_request(from, *m, t)) net_.send(to, from, *a);
    } else if (const auto* m = std::get_if<QRecoverState>(&w)) {
      bool was_ready = n.host->ready();
      n.host->on_recover_state(from, *m, t);
      // Recovered without state: the node takes the configuration the
      // answers showed (the shell saves it with the acceptor's state).
      if (!was_ready && n.host->ready() && n.host->topology().version() > n.config.version()) {
        ++recovered_across_;
        adopt(n, n.host->topology(), false, true);
      }
      check_acceptor(n);
    } else if (std::holds_alternative<ConfigAsk>(w)) {
      net_.send(to, from, Wire(ConfigTell{n.config}));
    } else if (const auto* m = std::get_if<ConfigTell>(&w)) {
      adopt(n, m->config, false, false);
    }
  }

  // An answer only from a voting acceptor; a vote (an ok promise or accept
  // for ballot `b`) only once the data dir holds it, so that a crash cannot
  // take it back.
  void check_vote(const SimNode& n, bool was_voting, const std::string& key, const Ballot& b, bool ok,
                  bool accept) {
    if (!was_voting) violation(fmt::format("{}: answered for {}.{} while not voting", n.id, b.counter, b.node));
    if (!ok || !durable_) return;
    const QSlotState* saved = nullptr;
    if (n.disk.saved)
      for (const auto& s : n.disk.saved->slots)
        if (s.key == key) saved = &s;
    bool held = saved && (accept ? saved->has_value && saved->accepted >= b : saved->promised >= b);
    if (!held)
      violation(fmt::format("{}: {} {}.{} which its data dir does not hold", n.id, accept ? "accepted" : "promised",
                            b.counter, b.node));
  }

  // A node's acceptor after an event: promised >= accepted, and neither
  // goes back within this life; the data dir never goes back at all.
  void check_acceptor(SimNode& n) {
    for (const auto& [key, slot] : n.host->acceptor().slots()) {
      if (slot.has_value && slot.accepted > slot.promised)
        violation(fmt::format("{}: accepted {}.{} above its promise", n.id, slot.accepted.counter, slot.accepted.node));
      step_up(n, "acceptor", n.seen_memory[key], slot.promised, slot.has_value ? slot.accepted : Ballot{});
    }
    if (n.wipe_pending && n.host->disk_error().empty()) n.wipe_pending = false;
    if (!n.disk.saved || n.wipe_pending) return;
    for (const auto& s : n.disk.saved->slots)
      step_up(n, "data dir", n.seen_disk[s.key], s.promised, s.has_value ? s.accepted : Ballot{});
  }

  void step_up(const SimNode& n, const char* where, Seen& seen, const Ballot& promised, const Ballot& accepted) {
    if (promised < seen.promised || accepted < seen.accepted)
      violation(fmt::format("{}: {} went back from {}.{}/{}.{} to {}.{}/{}.{}", n.id, where, seen.promised.counter,
                            seen.promised.node, seen.accepted.counter, seen.accepted.node, promised.counter,
                            promised.node, accepted.counter, accepted.node));
    seen.promised = std::max(seen.promised, promised);
    seen.accepted = std::max(seen.accepted, accepted);
  }

  // Whether `who` hold a majority of the configuration `a` was sent under.
  bool majority(const Acceptance& a, const std::set<NodeId>& who) const {
    auto it = configs_.find(a.config);
    if (it == configs_.end()) return false;
    std::size_t in = 0;
    for (const auto& id : who) in += it->second.contains(id);
    return in >= it->second.quorum();
  }

  // The oracle: one value per key and ballot; a majority of the
  // configuration the proposer counted in makes it chosen.
  void accepted(const NodeId& acceptor, const QAccept& m) {
    if (m.key == kMembersKey) learn_config(m.value);
    Acceptance& a = oracle_[m.key][m.ballot];
    a.config = m.config;
    if (a.by.empty()) a.value = m.value;
    if (a.value != m.value)
      violation(fmt::format("ballot {}.{} accepted both '{}' and '{}'", m.ballot.counter, m.ballot.node,
                            a.value.data, m.value.data));
    a.by.insert(acceptor);
    a.ever.insert(acceptor);
    if (a.chosen || !majority(a, a.by)) return;
    a.chosen = true;
    a.chosen_at = now();
    if (m.key != kKey) return;
    Parsed p = parse(a.value);
    auto [it, fresh] = chosen_by_count_.emplace(p.count, p.tag);
    if (!fresh && it->second != p.tag)
      violation(fmt::format("two values with count {} chosen: {} and {}", p.count, it->second, p.tag));
    if (!a.value.lease.holder.empty()) latest_holder_ = a.value.lease.holder;
  }

  void commit_arrived(SimNode& n, const QCommit& m) {
    std::optional<RegValue> before;
    if (const QCommit* c = n.copy.find(m.key)) before = c->value;
    if (!n.copy.apply(m)) return;
    auto& ballots = oracle_[m.key];
    auto it = ballots.find(m.ballot);
    if (it == ballots.end() || !majority(it->second, it->second.ever) || it->second.value != m.value)
      violation(fmt::format("{}: copy took '{}' of {}, not accepted by a majority at its ballot", n.id,
                            m.key == kKey ? m.value.data : "a configuration", m.key));
    if (m.key == kMembersKey) return adopt(n, m.value);
    if (before && parse(before).count > parse(m.value).count)
      violation(fmt::format("{}: copy went back from '{}' to '{}'", n.id, before->data, m.value.data));
  }

  // The final value's ancestry is the one history: every committed
  // increment and every chosen value lies on it, and everything on it was
  // made by an increment that committed or may have (no_quorum, lease_held).
  void check_history(std::uint64_t final_count) {
    std::set<std::string> lineage;
    std::string tag = final_count == 0 ? "-" : final_tag_;
    std::uint64_t expect = final_count;
    while (tag != "-") {
      auto it = created_.find(tag);
      if (it == created_.end()) return violation("final value has an unknown ancestor " + tag);
      if (it->second.count != expect)
        return violation(fmt::format("{} has count {}, expected {}", tag, it->second.count, expect));
      lineage.insert(tag);
      const ClientOp& c = clients_[it->second.client];
      if (c.done && c.outcome == CasOutcome::precondition_failed)
        violation(fmt::format("{} is in the history but its op failed its precondition", tag));
      tag = it->second.parent;
      --expect;
    }
    if (expect != 0) violation(fmt::format("history ends at count {}, not 0", expect));
    std::uint64_t committed = 0, maybe = 0;
    for (const auto& c : clients_) {
      if (c.read) continue;
      if (c.done && c.outcome == CasOutcome::committed) {
        ++committed;
        std::string t = parse(c.value).tag;
        if (!lineage.contains(t))
          violation(fmt::format("committed '{}' ({}) is missing from the final history", c.value->data, c.node));
      } else if (!c.done || c.outcome != CasOutcome::precondition_failed) {
        ++maybe;
      }
    }
    for (const auto& [b, a] : oracle_[kKey])
      if (a.chosen && !lineage.contains(parse(a.value).tag))
        violation(fmt::format("chosen '{}' at {}.{} is off the final history", a.value.data, b.counter, b.node));
    if (final_count < committed)
      violation(fmt::format("final count {} < {} committed increments", final_count, committed));
    // The rest of the count is increments whose outcome was unknown to their
    // caller (no_quorum, lease_held, unfinished), or an op counted twice: a
    // rival adopted its first attempt while it retried. Every such entry was
    // checked above to come from an op that may have taken effect.
    stats.committed += committed;
    stats.maybe += maybe;
    stats.unknown_taken += final_count - std::min(final_count, committed);
    if (committed == 0 && std::getenv("RG_DEBUG")) {
      std::map<std::string, int> why;
      for (const auto& c : clients_) ++why[fmt::format("{} {}", c.node, c.done ? c.reason : "unfinished")];
      for (const auto& [w, k] : why) MESSAGE(k << " x " << w);
    }
    if (committed == 0) violation("no increment committed at all");
  }

  // Once a value holding (H, epoch) with lease L is chosen, from an op that
  // started at s, no later-ballot value naming another holder or epoch is
  // chosen before s + L on the fastest clock, unless H released that lease
  // first.
  void check_leases() {
    std::vector<const std::pair<const Ballot, Acceptance>*> chosen;
    for (const auto& entry : oracle_[kKey])
      if (entry.second.chosen) chosen.push_back(&entry);
    for (std::size_t i = 0; i < chosen.size(); ++i) {
      const LeaseTag& held = chosen[i]->second.value.lease;
      if (held.holder.empty() || held.lease_ms == 0) continue;
      Time s = clients_[created_.at(parse(chosen[i]->second.value).tag).client].started;
      Time until = s + Duration(static_cast<Duration::rep>(
                           static_cast<double>(milliseconds(held.lease_ms).count()) / max_rate_));
      for (std::size_t j = i + 1; j < chosen.size(); ++j) {
        const Acceptance& w = chosen[j]->second;
        if (w.chosen_at >= until || (w.value.lease.holder == held.holder && w.value.lease.epoch == held.epoch))
          continue;
        auto release = releases_.find({held.holder, held.epoch});
        if (release != releases_.end() && release->second <= w.chosen_at) continue;
        violation(fmt::format("'{}' chosen at {}ms while {} (epoch {}) held the lease until {}ms", w.value.data,
                              ms(w.chosen_at), held.holder, held.epoch, ms(until)));
      }
    }
  }

  // Between a client's operations. With member changes, half the runs
  // write rarely, so that changes follow each other with no write between:
  // what one configuration chose must then reach the next by the change's
  // own catch-up, not by the workload's next write.
  Duration think_time() {
    if (reconfig_ && sparse_) return uniform_duration(rng_, 100ms, 600ms);
    return uniform_duration(rng_, 0ms, 20ms);
  }

  // Every configuration a change proposed, by tag: the oracle counts a
  // ballot's majority in the one its accepts were tagged with.
  void learn_config(const RegValue& v) {
    if (auto rec = config_from_register(v)) configs_.emplace(tag_of(rec->topology()), rec->topology());
  }

  // A node adopts a committed configuration newer than its own (durably:
  // SimNode::config survives its crashes). A process added gets its
  // proposer; an operator under way goes on.
  void adopt(SimNode& n, const RegValue& v) {
    if (auto rec = config_from_register(v)) adopt(n, rec->topology(), rec->settled, false);
  }

  // `settled`: its record says so (a removal forgets then). `recovered`:
  // the acceptor host took `t` from its recovery's answers (and forgot, if
  // in none of the configurations they showed).
  void adopt(SimNode& n, const Topology& t, bool settled, bool recovered) {
    if (t.version() < n.config.version() || (t.version() == n.config.version() && !settled)) return;
    const bool was_removed = n.host->removed() && !recovered;
    const bool newer = t.version() > n.config.version();
    n.config = t;
    n.host->adopted(n.config, settled);
    if (!was_removed && n.host->removed()) {  // removed: its acceptor forgot every slot, as it must
      n.seen_memory.clear();
      n.seen_disk.clear();
      n.wipe_pending = !recovered;  // (recovered: its data dir was lost anyway)
      for (auto& [key, ballots] : oracle_)
        for (auto& [b, a] : ballots) a.by.erase(n.id);
    }
    if (!newer) return;
    if (n.proposer) {
      n.proposer->adopt(n.config, local(n), out_);
    } else if (n.config.contains(n.id)) {
      n.proposer = std::make_unique<QuorumProposer>(n.config, n.id, proposer_config());
    }
    if (n.change) n.change->adopted(n.config.version(), *n.proposer, local(n), out_);
    route(n);
  }

  // The operator: one member change at a time, at a running member, keeping
  // 3 to 5 members (an add when 3, a removal when 5).
  void operate() {
    if (stopped_) return;
    timers_.at(now() + uniform_duration(rng_, 20ms, 150ms), [this] { operate(); });
    // Now and then a second operator starts while a change runs: the two
    // compare against the same record, and the register serializes them.
    bool busy = false;
    for (const auto& [id, n] : nodes_) busy = busy || (n.change && !n.change_ended);
    if (busy && !chance(rng_, 0.2)) return;
    NodeId at = pool_[uniform(rng_, 0, pool_.size() - 1)];
    SimNode& n = nodes_.at(at);
    if (n.crashed || n.paused || !n.proposer || !n.config.contains(at) || (n.change && !n.change_ended)) return;
    const Topology& c = n.config;
    bool add = c.size() == 3 || (c.size() < kPool && chance(rng_, 0.5));
    std::vector<NodeId> choices;
    for (const auto& id : pool_)
      if (add ? !c.contains(id) : (c.contains(id) && id != at)) choices.push_back(id);
    if (choices.empty()) return;
    n.change = std::make_unique<MemberChange>(choices[uniform(rng_, 0, choices.size() - 1)], add,
                                              std::vector<std::string>{kKey});
    n.change_ended = false;
    n.change->start(*n.proposer, local(n), out_);
    route(n);
  }

  // Counts a change once it ends; its driver stays (results of operations
  // it gave up on may still come) until the next change replaces it.
  void change_progress(SimNode& n) {
    auto stage = n.change->stage();
    if (n.change_ended || (stage != MemberChange::Stage::done && stage != MemberChange::Stage::failed)) return;
    n.change_ended = true;
    ++(stage == MemberChange::Stage::done ? changes_done_ : changes_failed_);
    if (stage == MemberChange::Stage::failed && std::getenv("RG_DEBUG")) MESSAGE("change failed: " << n.change->why());
  }

  bool leases_;
  bool durable_;
  bool reconfig_;
  bool sparse_ = false;  // the workload writes rarely (think_time)
  SimPlants plants_;
  double crash_after_accept_ = 0;
  double max_rate_ = 1.0;
  std::mt19937_64 rng_;
  SimClock clock_;
  SimTimers timers_;
  SimNetwork<Wire> net_;
  Topology topology_;  // the first configuration
  std::vector<NodeId> pool_;  // every process, member or not
  struct TagLess {
    bool operator()(const ConfigTag& a, const ConfigTag& b) const {
      return std::pair(a.version, a.digest) < std::pair(b.version, b.digest);
    }
  };
  std::map<ConfigTag, Topology, TagLess> configs_;
  std::size_t changes_done_ = 0, changes_failed_ = 0, recovered_across_ = 0;
  Time start_{};
  std::map<NodeId, SimNode> nodes_;
  QOut out_;
  bool stopped_ = false;
  std::uint64_t partition_generation_ = 0;
  std::vector<ClientOp> clients_;
  std::map<std::string, Created> created_;
  std::map<std::pair<NodeId, std::uint64_t>, Time> releases_;  // (holder, epoch) -> first release made
  std::map<std::string, std::map<Ballot, Acceptance>> oracle_;
  std::map<std::uint64_t, std::string> chosen_by_count_;
  NodeId latest_holder_;
  std::string final_tag_;
  Violations violations_;
};

constexpr std::size_t kSeeds = 250;


void run_scenario(bool leases, std::size_t runs) {
  stats = SimStats{};
  for (bool durable : {true, false})
    for (std::size_t size : {3, 5})
      for (auto seed : rg::sim::seeds(runs)) {
        Violations v = QuorumCluster(size, seed, leases, durable).run();
        std::ostringstream why;
        for (const auto& line : v) why << "\n  " << line;
        CHECK_MESSAGE(v.empty(), "seed " << seed << ", " << size << " nodes, " << (durable ? "durable" : "in memory")
                                         << " (replay: RG_SEED=" << seed << ")" << why.str());
      }
  if (std::getenv("RG_STATS"))
    MESSAGE("committed " << stats.committed << ", maybe " << stats.maybe
                         << ", of which took effect " << stats.unknown_taken);
}

}  // namespace

TEST_CASE("quorum sim: concurrent increments under loss, partitions, pauses, restarts and skewed clocks form one history") {
  run_scenario(false, kSeeds);
}

TEST_CASE("quorum sim: leases keep other holders out until they run out") {
  run_scenario(true, kSeeds);
}


// The per-event checks can fail: an acceptor that answers from a change
// its data dir refused is caught in most runs (the rest had no disk fault
// under a vote).
TEST_CASE("quorum sim: the checks catch an acceptor voting from state it could not save") {
  std::size_t runs = 0, caught = 0;
  for (auto seed : rg::sim::seeds(20))
    for (std::size_t size : {3, 5}) {
      ++runs;
      if (!QuorumCluster(size, seed, false, true, SimPlants{true}).run().empty()) ++caught;
    }
  MESSAGE("vote_unsaved: caught in " << caught << " of " << runs << " runs");
  CHECK_MESSAGE(caught * 2 >= runs, "the planted unsaved vote went unnoticed in " << runs - caught << " of " << runs
                                                                              << " runs");
}

// Member changes (issue 14): five processes, three to five of them members,
// one change at a time by an operator at a random member (crashing with it
// and settled by the next), under the same workload and faults, durable
// state, one crash in four losing the data dir: the node then starts from
// its `--members` list (the first configuration) and recovers across
// configurations. A node refused as stale asks the refuser for its
// configuration. The oracle counts each ballot's majority in the
// configuration its accepts were tagged with.
// Their planted bugs (no fence, no catch-up, recovery counted in the
// `--members` list alone) are caught by the scripted traces in
// quorum_trace_test.cpp: these random runs did not build those
// interleavings (0 of 80 runs each for the first two, 0 of 250 for the
// third, with the plants set, when tried).
void run_reconfig(std::size_t runs) {
  std::size_t done = 0, failed = 0, count = 0, across = 0;
  for (bool leases : {false, true})
    for (auto seed : rg::sim::seeds(runs)) {
      ++count;
      QuorumCluster c(3, seed, leases, true, SimPlants{}, true);
      Violations v = c.run();
      done += c.changes_done();
      failed += c.changes_failed();
      across += c.recovered_across();
      std::ostringstream why;
      for (const auto& line : v) why << "\n  " << line;
      CHECK_MESSAGE(v.empty(), "seed " << seed << ", member changes" << std::string(leases ? ", leases" : "")
                                       << " (replay: RG_SEED=" << seed << ")" << why.str());
    }
  MESSAGE("member changes: " << done << " settled, " << failed << " given up, in " << count << " runs; "
                              << across << " acceptors recovered without state into a newer configuration");
  CHECK(across > 0);  // the scenario does reach recovery across configurations
}

TEST_CASE("quorum sim: members changed one at a time between 3 and 5 under faults keep one history") {
  run_reconfig(kSeeds / 2);
}
