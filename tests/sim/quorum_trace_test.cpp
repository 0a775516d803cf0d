// Scripted traces of the quorum register with acceptors that lose their
// state on restart (in-memory mode): the two interleavings that broke the
// register before AcceptorHost's recovery rules, replayed step by step.
// Every message waits in a pool until the script delivers or drops it, so
// each trace is exact. Each trace runs as the product runs it, where it must
// hold, and with the rule it needs planted away, where the check must catch
// it (a check that cannot fail proves nothing).
//
// The register holds "<count> <tag>", and every operation increments the
// count: two different values with the same count, each committed or
// chosen (accepted by a majority of acceptors that still remember it), are
// a fork of the history, which is what two masters at once are made of.
#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <variant>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "grid/acceptor_host.h"
#include "grid/member_change.h"
#include "grid/quorum.h"
#include "tests/sim/sim_network.h"

using namespace rg;
using namespace rg::grid;
using namespace std::chrono_literals;

namespace {

const std::string kKey = "roles/table";
constexpr Duration kDeadline = 500ms;
constexpr Duration kWait = 2 * kDeadline;

using Wire = std::variant<QPrepare, QPromise, QAccept, QAccepted, QCommit, QRecoverRequest, QRecoverState>;

struct Msg {
  NodeId from, to;
  Wire w;
};
using Filter = std::function<bool(const Msg&)>;

Filter any() {
  return [](const Msg&) { return true; };
}
// Both ends in `ids`: what a partition leaves of the network.
Filter among(std::set<NodeId> ids) {
  return [ids](const Msg& m) { return ids.contains(m.from) && ids.contains(m.to); };
}
Filter involving(std::set<NodeId> ids) {
  return [ids](const Msg& m) { return ids.contains(m.from) || ids.contains(m.to); };
}
template <class T>
Filter of_type(const NodeId& from, const NodeId& to) {
  return [from, to](const Msg& m) { return std::holds_alternative<T>(m.w) && m.from == from && m.to == to; };
}

std::uint64_t count_of(const RegValue& v) { return std::stoull(v.data.substr(0, v.data.find(' '))); }

struct Node {
  NodeId id;
  std::unique_ptr<AcceptorHost> host;
  std::unique_ptr<QuorumProposer> proposer;  // null while not a member
  std::uint64_t life = 0;
  Topology config;  // adopted
  std::set<std::uint64_t> increments;  // its proposer's operations that are increments
};

class Trace {
 public:
  // Processes n1..n<n>; the first `members` of them (all by default) are
  // the cluster's first configuration, the rest may be added later.
  Trace(std::size_t n, AcceptorHostConfig::Plants plants, std::size_t members = 0) : plants_(plants) {
    std::vector<NodeId> ids;
    for (std::size_t i = 1; i <= n; ++i) ids.push_back("n" + std::to_string(i));
    topology_ = Topology(std::vector<NodeId>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(members ? members : n)));
    configs_.emplace(topology_.fingerprint(), topology_);
    ids_ = ids;
    // A running cluster: every acceptor ready, with nothing accepted yet.
    for (const auto& id : ids) {
      nodes_[id].config = topology_;
      boot(nodes_[id], id, DurableState{});
    }
  }

  // An increment by `node`'s proposer, from whatever value it finds. With
  // `held`, the value holds that lease (as a master's renewal does), on each
  // acceptor's clock from its accept.
  void increment(const NodeId& node, LeaseTag held = {}) {
    Node& n = nodes_.at(node);
    std::string tag = fmt::format("{}.{}", node, ++ops_);
    QOut out;
    n.increments.insert(n.proposer->cas(kKey, [tag, held](const std::optional<RegValue>& cur) -> std::optional<RegValue> {
      std::uint64_t count = cur ? count_of(*cur) : 0;
      return RegValue{fmt::format("{} {}", count + 1, tag), held};
    }, now_, out));
    route(n, out);
  }

  // `node` starts a member change (MemberChange): `id` added or removed.
  void change(const NodeId& node, const NodeId& id, bool add, bool skip_catch_up = false,
              bool no_lease_wait = false) {
    Node& n = nodes_.at(node);
    operator_ = node;
    change_ = std::make_unique<MemberChange>(id, add, std::vector<std::string>{kKey});
    change_->plant_skip_catch_up = skip_catch_up;
    change_->plant_no_lease_wait = no_lease_wait;
    QOut out;
    change_->start(*n.proposer, now_, out);
    route(n, out);
  }
  std::string change_stage() const { return change_ ? to_string(change_->stage()) + std::string(" ") + change_->why() : "none"; }
  std::uint64_t version(const NodeId& node) const { return nodes_.at(node).config.version(); }

  // Delivers every pending message `f` matches, and those they cause, in order.
  void deliver(const Filter& f) {
    for (bool more = true; more;) {
      more = false;
      for (std::size_t i = 0; i < pool_.size(); ++i) {
        if (!f(pool_[i])) continue;
        Msg m = std::move(pool_[i]);
        pool_.erase(pool_.begin() + static_cast<std::ptrdiff_t>(i));
        receive(m);
        more = true;
        break;
      }
    }
  }
  void drop(const Filter& f) { std::erase_if(pool_, f); }
  // A few loop turns 20 ms apart, delivering what `f` lets through: long
  // enough for an operation's retries, well within its deadline.
  void exchange(const Filter& f, int turns = 10) {
    for (int i = 0; i < turns; ++i) {
      deliver(f);
      advance(20ms);
      tick_all();
    }
    deliver(f);
  }
  std::size_t pending(const Filter& f) const { return std::count_if(pool_.begin(), pool_.end(), f); }

  void advance(Duration d) { now_ += d; }
  // The shell's loop turn: timeouts, resends and recovery requests.
  void tick(const NodeId& node) {
    Node& n = nodes_.at(node);
    n.host->tick(now_);
    for (const auto& to : n.host->requests_due(now_)) pool_.push_back(Msg{node, to, n.host->request()});
    for (auto& [to, a] : n.host->answers_due()) pool_.push_back(Msg{node, to, std::move(a)});
    QOut out;
    if (n.proposer) n.proposer->tick(now_, out);
    if (change_ && node == operator_ && n.proposer) change_->tick(*n.proposer, now_, out);
    route(n, out);
  }
  void tick_all() {
    for (const auto& [id, n] : nodes_) tick(id);
  }

  // kill -9 and start again, in-memory: the acceptor and the proposer
  // forget everything. Its messages already sent stay in flight.
  // `lost_config`: the configuration it had adopted is lost too (it was in
  // the data dir): it starts from the first one, its `--members` list.
  void restart(const NodeId& node, bool lost_config = false) {
    Node& n = nodes_.at(node);
    ++n.life;
    if (lost_config) n.config = topology_;
    for (auto& [key, ballots] : oracle_)
      for (auto& [ballot, a] : ballots) a.by.erase(node);
    boot(n, node, std::nullopt);
  }

  // kill -9 and start again with its data dir: the acceptor keeps what it
  // promised and accepted, and counts every lease it holds from now (it
  // cannot know when it accepted).
  void restart_keeping_state(const NodeId& node) {
    Node& n = nodes_.at(node);
    ++n.life;
    DurableState kept{n.host->acceptor().export_state(), {}};
    boot(n, node, std::move(kept));
  }

  bool voting(const NodeId& node) const { return nodes_.at(node).host->voting(); }
  const std::vector<std::string>& violations() const { return violations_; }
  std::string committed() const { return fmt::format("{}", fmt::join(committed_, ", ")); }

  // Heals everything and lets every node finish (recovery, pending
  // operations): loop turns 25 ms apart, for longer than the recovery wait.
  void settle() {
    for (int turn = 0; turn < 80; ++turn) {
      deliver(any());
      advance(25ms);
      tick_all();
    }
    deliver(any());
  }

 private:
  struct Acceptance {
    RegValue value;
    std::set<NodeId> by;  // accepted and still remember it
    bool chosen = false;
  };

  // A committed configuration newer than the node's: it adopts it (and
  // gets a proposer once it is a member); the operator goes on.
  void adopt(Node& n, const RegValue& v, QOut& out) {
    if (auto rec = config_from_register(v)) adopt(n, rec->topology(), out, rec->settled);
  }
  void adopt(Node& n, const Topology& t, QOut& out, bool settled = false) {
    if (t.version() < n.config.version()) return;
    n.host->adopted(t, settled);  // a settled removal forgets
    if (t.version() == n.config.version()) return;
    n.config = t;
    if (n.proposer)
      n.proposer->adopt(n.config, now_, out);
    else if (n.config.contains(n.id))
      n.proposer = std::make_unique<QuorumProposer>(n.config, n.id, proposer_config(n));
    if (change_ && n.id == operator_) change_->adopted(n.config.version(), *n.proposer, now_, out);
  }

  QuorumProposerConfig proposer_config(const Node& n) const {
    QuorumProposerConfig pc;
    pc.timeout = kDeadline;
    pc.ballot_floor = 1000 * (n.life + 1);  // a new life's ballots are above the old one's
    return pc;
  }

  void boot(Node& n, const NodeId& id, std::optional<DurableState> loaded) {
    n.id = id;
    AcceptorHostConfig hc;
    hc.topology = n.config;
    hc.self = id;
    hc.recovery_wait = kWait;
    hc.retry_interval = 10ms;
    hc.plant = plants_;
    n.host = std::make_unique<AcceptorHost>(hc, nullptr, std::move(loaded), now_, ++nonces_);
    for (const auto& other : ids_) n.host->heard(other);  // discovery
    n.proposer = n.config.contains(id) ? std::make_unique<QuorumProposer>(n.config, id, proposer_config(n)) : nullptr;
  }

  void route(Node& n, QOut& out) {
    for (const auto& s : out.sends) {
      if (!s.to.empty()) {
        std::visit([&](const auto& m) { pool_.push_back(Msg{n.id, s.to, Wire(m)}); }, s.msg);
        continue;
      }
      for (const auto& to : n.proposer->topology().members())
        std::visit([&](const auto& m) { pool_.push_back(Msg{n.id, to, Wire(m)}); }, s.msg);
    }
    std::vector<CasResult> results = std::move(out.results);
    out.clear();
    for (const auto& r : results) {
      if (n.increments.erase(r.op)) {
        if (r.outcome == CasOutcome::committed) record(fmt::format("{} committed '{}'", n.id, r.value->data), *r.value);
      } else if (change_ && n.id == operator_) {
        change_->on_result(r, *n.proposer, now_, out);
        if (auto rec = change_->take_adopt()) adopt(n, config_to_register(*rec), out);
      }
    }
    if (!out.sends.empty() || !out.results.empty()) route(n, out);
  }

  void receive(const Msg& m) {
    Node& n = nodes_.at(m.to);
    QOut out;
    if (const auto* p = std::get_if<QPrepare>(&m.w)) {
      if (auto a = n.host->on_prepare(*p, now_)) pool_.push_back(Msg{m.to, m.from, *a});
    } else if (const auto* p = std::get_if<QAccept>(&m.w)) {
      auto a = n.host->on_accept(*p, now_);
      if (!a) return;
      if (a->verdict == AcceptVerdict::ok) accepted(m.to, *p);
      pool_.push_back(Msg{m.to, m.from, *a});
    } else if (const auto* p = std::get_if<QPromise>(&m.w)) {
      if (n.proposer) n.proposer->on_promise(m.from, *p, now_, out);
    } else if (const auto* p = std::get_if<QAccepted>(&m.w)) {
      if (n.proposer) n.proposer->on_accepted(m.from, *p, now_, out);
    } else if (const auto* p = std::get_if<QCommit>(&m.w)) {
      if (p->key == kMembersKey) adopt(n, p->value, out);
    } else if (const auto* p = std::get_if<QRecoverRequest>(&m.w)) {
      if (auto a = n.host->on_recover_request(m.from, *p, now_)) pool_.push_back(Msg{m.to, m.from, *a});
    } else if (const auto* p = std::get_if<QRecoverState>(&m.w)) {
      n.host->on_recover_state(m.from, *p, now_);
      if (n.host->ready()) adopt(n, n.host->topology(), out);  // what its recovery found
    }
    route(n, out);
  }

  // Chosen: accepted by a majority of the configuration the accepts were
  // tagged with (a member change's accepts name every configuration it makes).
  void accepted(const NodeId& acceptor, const QAccept& m) {
    if (m.key == kMembersKey) {
      if (auto rec = config_from_register(m.value)) configs_.emplace(rec->topology().fingerprint(), rec->topology());
      return;
    }
    Acceptance& a = oracle_[m.key][m.ballot];
    a.value = m.value;
    a.by.insert(acceptor);
    auto config = configs_.find(m.config.digest);
    if (a.chosen || config == configs_.end()) return;
    std::size_t in = 0;
    for (const auto& id : a.by) in += config->second.contains(id);
    if (in < config->second.quorum()) return;
    a.chosen = true;
    record(fmt::format("'{}' chosen by {}", m.value.data, fmt::join(a.by, ",")), m.value);
  }

  // Two different values with one count, each committed or chosen: a fork.
  void record(const std::string& what, const RegValue& v) {
    committed_.push_back(what);
    auto [it, fresh] = by_count_.emplace(count_of(v), v.data);
    if (!fresh && it->second != v.data)
      violations_.push_back(fmt::format("fork at count {}: '{}' and '{}' ({})", count_of(v), it->second, v.data, what));
  }

  AcceptorHostConfig::Plants plants_;
  Topology topology_;  // the first configuration
  std::vector<NodeId> ids_;
  std::map<std::uint64_t, Topology> configs_;  // every one proposed, by fingerprint
  std::unique_ptr<MemberChange> change_;
  NodeId operator_;
  Time now_ = Time{} + std::chrono::hours(1);
  std::map<NodeId, Node> nodes_;
  std::deque<Msg> pool_;
  std::map<std::string, std::map<Ballot, Acceptance>> oracle_;
  std::map<std::uint64_t, std::string> by_count_;
  std::vector<std::string> committed_;
  std::vector<std::string> violations_;
  std::uint64_t ops_ = 0, nonces_ = 0;
};

// Issue 10, first trace. 5 nodes. n2's write (epoch 2, here count 2) is
// accepted only by n2, n3, n4: n1 and n5 are cut off. n3 and n4 restart at
// once and forget it. n3 hears n1, n5 (holding count 1) and n4 (recovering
// too); n2 is unreachable. n1 then writes from its stale count 1.
std::vector<std::string> recovering_peers_trace(AcceptorHostConfig::Plants plants, std::string& story) {
  Trace t(5, plants);
  t.increment("n1");
  t.exchange(any());
  t.increment("n2");
  t.exchange(among({"n2", "n3", "n4"}));
  t.drop(involving({"n1", "n5"}));
  t.restart("n3");
  t.restart("n4");
  t.advance(kWait + 1ms);  // rule 1: only now may they ask
  t.exchange(among({"n1", "n3", "n4", "n5"}));
  t.drop(involving({"n2"}));
  story += fmt::format("after recovery without n2: n3 voting {}, n4 voting {}; ", t.voting("n3"), t.voting("n4"));
  t.increment("n1");
  t.exchange(among({"n1", "n3", "n4", "n5"}));
  t.drop(involving({"n2"}));
  t.settle();
  t.increment("n1");  // a last write from whatever is current
  t.settle();
  story += "history: " + t.committed();
  return t.violations();
}

// Issue 10, second trace. 5 nodes. n1's write of count 2 is accepted by n1
// and by n2's old process; its accept to n3 is held in the network and the
// ones to n4, n5 are lost. n2 restarts and recovers from n3, n4, n5 (which
// hold count 1). The held accept then reaches n3, still within n1's
// deadline, so n1 counts n1, the old n2 and n3: committed. n4 writes from
// count 1 through n2, n4, n5.
std::vector<std::string> dead_vote_trace(AcceptorHostConfig::Plants plants, std::string& story) {
  Trace t(5, plants);
  t.increment("n1");
  t.exchange(any());
  t.increment("n1");  // the fast path: an accept to everyone at once
  t.deliver(of_type<QAccept>("n1", "n1"));
  t.deliver(of_type<QAccepted>("n1", "n1"));
  t.deliver(of_type<QAccept>("n1", "n2"));
  t.deliver(of_type<QAccepted>("n2", "n1"));
  t.drop(of_type<QAccept>("n1", "n4"));
  t.drop(of_type<QAccept>("n1", "n5"));
  t.restart("n2");
  t.tick("n2");  // asks at once only if rule 1 is planted away
  t.deliver(among({"n2", "n3", "n4", "n5"}));
  story += fmt::format("n2 voting right after its restart: {}; ", t.voting("n2"));
  t.deliver(of_type<QAccept>("n1", "n3"));
  t.deliver(of_type<QAccepted>("n3", "n1"));
  t.increment("n4");
  t.exchange(among({"n2", "n4", "n5"}));
  t.drop(involving({"n1", "n3"}));
  t.settle();
  t.increment("n4");
  t.settle();
  story += "history: " + t.committed();
  return t.violations();
}

std::string lines(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& l : v) s += "\n  " + l;
  return s;
}

// A trace where the checks must hold as built (its story showing
// `expect`) and catch the bug `plant` names when it is planted.
using TraceFn = std::function<std::vector<std::string>(bool planted, std::string& story)>;
void as_built_and_planted(const TraceFn& run, const std::string& expect, const std::string& plant) {
  std::string story;
  auto v = run(false, story);
  CHECK_MESSAGE(v.empty(), story << lines(v));
  CHECK_MESSAGE(story.find(expect) != std::string::npos, story);
  MESSAGE("as built: " << story);
  std::string bad;
  auto caught = run(true, bad);
  CHECK_MESSAGE(!caught.empty(), plant << " went unnoticed: " << bad);
  MESSAGE("planted (" << plant << "): " << bad << lines(caught));
}

}  // namespace

TEST_CASE("quorum trace: recovery never counts peers that are recovering themselves") {
  as_built_and_planted([](bool planted, std::string& story) {
    AcceptorHostConfig::Plants plants;
    plants.count_recovering_peers = planted;
    return recovering_peers_trace(plants, story);
  }, "n3 voting false, n4 voting false", "counting recovering peers");
}

TEST_CASE("quorum trace: a restarted acceptor waits out every deadline before it recovers") {
  as_built_and_planted([](bool planted, std::string& story) {
    AcceptorHostConfig::Plants plants;
    plants.skip_recovery_wait = planted;
    return dead_vote_trace(plants, story);
  }, "n2 voting right after its restart: false", "recovering at once");
}

namespace {

// Issue 14, the design's example: three members grow to five. Count 2 is
// accepted by n1 and n2 only (n3 missed it) just before the first change,
// and nothing writes the key meanwhile. After the second change n3, n4 and
// n5 are a majority of the five: only the first change's catch-up read
// carried count 2 to one of them, so without it n3 increments from count 1.
std::vector<std::string> grow_without_writes_trace(bool skip_catch_up, std::string& story) {
  Trace t(5, {}, 3);
  t.increment("n1");
  t.exchange(any());
  t.increment("n1");
  t.exchange(among({"n1", "n2"}));
  t.drop(of_type<QAccept>("n1", "n3"));
  t.exchange(any());
  for (const char* added : {"n4", "n5"}) {
    t.change("n1", added, true, skip_catch_up);
    t.exchange(any());
    story += fmt::format("add {}: {}; ", added, t.change_stage());
  }
  story += fmt::format("n3 at version {}; ", t.version("n3"));
  // n3's first attempt is outbid at its own acceptor (n1's promised
  // ballots) and times out; it has learnt the ballot, and tries again.
  for (int attempt = 0; attempt < 2; ++attempt) {
    t.increment("n3");
    t.exchange(among({"n3", "n4", "n5"}), 30);
    t.drop(involving({"n1", "n2"}));
  }
  t.settle();
  story += "history: " + t.committed();
  return t.violations();
}

// Issue 14: a proposer left on an old configuration. n1 never learns the
// changes that grow {n1,n2,n3} to five (every commit of `cluster/members`
// to it is lost), while its own acceptor takes part in them. Count 2 is
// then chosen by n3, n4 and n5, a majority of the five. n1 increments
// under the three: n1 and n2 are a majority of those, and both missed
// count 2. Their acceptors have seen the five's tag, so they refuse it.
std::vector<std::string> stale_proposer_trace(AcceptorHostConfig::Plants plants, std::string& story) {
  Trace t(5, plants, 3);
  t.increment("n1");
  t.exchange(any());
  auto not_to_n1 = [](const Msg& m) {
    const auto* c = std::get_if<QCommit>(&m.w);
    return !(c && c->key == kMembersKey && m.to == "n1");
  };
  for (const char* added : {"n4", "n5"}) {
    t.change("n2", added, true);
    t.exchange(not_to_n1);
    t.drop(any());
    story += fmt::format("add {}: {}; ", added, t.change_stage());
  }
  story += fmt::format("n1 at version {}, n5 at {}; ", t.version("n1"), t.version("n5"));
  t.increment("n5");
  t.exchange(among({"n3", "n4", "n5"}));
  t.drop(any());
  t.increment("n1");
  t.exchange(among({"n1", "n2"}));
  t.drop(any());
  story += "history: " + t.committed();
  return t.violations();
}

}  // namespace

TEST_CASE("quorum trace: a member change's catch-up carries what the old members chose to the new majority") {
  as_built_and_planted(grow_without_writes_trace, "add n4: done ; add n5: done", "a change settled without its catch-up");
}

TEST_CASE("quorum trace: acceptors that saw a newer configuration refuse a proposer left on an older one") {
  as_built_and_planted([](bool planted, std::string& story) {
    AcceptorHostConfig::Plants plants;
    plants.no_config_fence = planted;
    return stale_proposer_trace(plants, story);
  }, "n1 at version 1, n5 at 3", "acceptors answering an older configuration");
}

namespace {

// Issue 14, recovery across configurations (DESIGN.md, "Changing the
// members", point 4; a review's trace). Four members remove n4: n1, n2 and
// n4 accept the change (majorities of both), n3 never hears of it, and n4
// misses its commit (so it never forgets). Count 2 is then chosen by n1 and
// n2, a majority of the three. n1 loses its data dir and starts again from
// its `--members` list, the four; n2 is cut off. Two ready answers of the
// four (n3 and n4, both at count 1) would do for the old rule. As built,
// n4's answer shows the unsettled record of the three, and n1 waits for two
// of n2 and n3. n3, which never heard of the change, increments under the
// four through n1, n3 and n4.
std::vector<std::string> recover_across_trace(AcceptorHostConfig::Plants plants, std::string& story) {
  Trace t(4, plants);
  t.increment("n1");
  t.exchange(any());
  auto no_commit_to_n4 = [](const Msg& m) {
    const auto* c = std::get_if<QCommit>(&m.w);
    return among({"n1", "n2", "n4"})(m) && !(c && c->key == kMembersKey && m.to == "n4");
  };
  t.change("n1", "n4", false);
  t.exchange(no_commit_to_n4);
  t.drop(any());
  story += fmt::format("remove n4: {}; n4 at version {}, n3 at {}; ", t.change_stage(), t.version("n4"),
                       t.version("n3"));
  t.increment("n2");
  t.exchange(among({"n1", "n2"}));
  t.drop(any());
  t.restart("n1", true);
  t.advance(kWait + 1ms);
  t.exchange(among({"n1", "n3", "n4"}));
  t.drop(involving({"n2"}));
  story += fmt::format("n1 voting without n2: {}; ", t.voting("n1"));
  t.increment("n3");
  t.exchange(among({"n1", "n3", "n4"}), 30);
  t.drop(any());
  t.settle();
  story += "history: " + t.committed();
  return t.violations();
}

}  // namespace

TEST_CASE("quorum trace: an acceptor that lost its state recovers from the configuration its peers' answers show") {
  as_built_and_planted([](bool planted, std::string& story) {
    AcceptorHostConfig::Plants plants;
    plants.recover_one_config = planted;
    return recover_across_trace(plants, story);
  }, "n1 voting without n2: false", "recovery counted in the --members list alone");
}

// A member back from a restart with its data dir counts the lease its slot
// holds from its start, and refuses others' writes until it ends. A
// removal that needs it (3 -> 2 members) meets that refusal in its
// catch-up; the change must wait the lease out, not spend its retries at
// once and fail (seen in tests/chaos/witness-add-remove.chaos).
TEST_CASE("quorum trace: a member change's catch-up waits out a lease a restarted member holds") {
  for (bool plant : {false, true}) {
    CAPTURE(plant);
    Trace t(3, {});
    t.increment("n3", LeaseTag{"n3", 1, 700});  // n3 held the table, as a master, for 700 ms
    t.exchange(any());
    t.advance(800ms);                 // its lease ran out everywhere
    t.increment("n1");                // a newer value, n3 cut off
    t.exchange(among({"n1", "n2"}));
    t.drop(involving({"n3"}));
    t.restart_keeping_state("n3");    // its old value's lease runs again, at n3 only
    t.change("n1", "n2", false, false, plant);
    t.settle();
    if (plant) {
      CHECK(t.change_stage().starts_with("failed"));
      CHECK(t.change_stage().find("lease held by n3") != std::string::npos);
    } else {
      CHECK(t.change_stage() == "done ");
      CHECK(t.version("n1") == 2);
    }
    CHECK(t.violations().empty());
  }
}
