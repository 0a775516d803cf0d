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
  std::unique_ptr<QuorumProposer> proposer;
  std::uint64_t life = 0;
};

class Trace {
 public:
  Trace(std::size_t n, AcceptorHostConfig::Plants plants) : plants_(plants) {
    std::vector<NodeId> ids;
    for (std::size_t i = 1; i <= n; ++i) ids.push_back("n" + std::to_string(i));
    topology_ = Topology(ids);
    // A running cluster: every acceptor ready, with nothing accepted yet.
    for (const auto& id : ids) boot(nodes_[id], id, DurableState{});
  }

  // An increment by `node`'s proposer, from whatever value it finds.
  void increment(const NodeId& node) {
    Node& n = nodes_.at(node);
    std::string tag = fmt::format("{}.{}", node, ++ops_);
    QOut out;
    n.proposer->cas(kKey, [tag](const std::optional<RegValue>& cur) -> std::optional<RegValue> {
      std::uint64_t count = cur ? count_of(*cur) : 0;
      return RegValue{fmt::format("{} {}", count + 1, tag), {}};
    }, now_, out);
    route(n, out);
  }

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
    n.proposer->tick(now_, out);
    route(n, out);
  }
  void tick_all() {
    for (const auto& id : topology_.members()) tick(id);
  }

  // kill -9 and start again, in-memory: the acceptor and the proposer
  // forget everything. Its messages already sent stay in flight.
  void restart(const NodeId& node) {
    Node& n = nodes_.at(node);
    ++n.life;
    for (auto& [ballot, a] : oracle_) a.by.erase(node);
    boot(n, node, std::nullopt);
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

  void boot(Node& n, const NodeId& id, std::optional<DurableState> loaded) {
    n.id = id;
    AcceptorHostConfig hc;
    hc.topology = topology_;
    hc.self = id;
    hc.recovery_wait = kWait;
    hc.retry_interval = 10ms;
    hc.plant = plants_;
    n.host = std::make_unique<AcceptorHost>(hc, nullptr, std::move(loaded), now_, ++nonces_);
    QuorumProposerConfig pc;
    pc.timeout = kDeadline;
    pc.ballot_floor = 1000 * (n.life + 1);  // a new life's ballots are above the old one's
    n.proposer = std::make_unique<QuorumProposer>(topology_, id, pc);
  }

  void route(Node& n, QOut& out) {
    for (const auto& s : out.sends) {
      for (const auto& to : topology_.members()) {
        if (!s.to.empty() && s.to != to) continue;
        std::visit([&](const auto& m) { pool_.push_back(Msg{n.id, to, Wire(m)}); }, s.msg);
      }
    }
    for (const auto& r : out.results)
      if (r.outcome == CasOutcome::committed) record(fmt::format("{} committed '{}'", n.id, r.value->data), *r.value);
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
      n.proposer->on_promise(m.from, *p, now_, out);
    } else if (const auto* p = std::get_if<QAccepted>(&m.w)) {
      n.proposer->on_accepted(m.from, *p, now_, out);
    } else if (const auto* p = std::get_if<QRecoverRequest>(&m.w)) {
      if (auto a = n.host->on_recover_request(m.from, *p, now_)) pool_.push_back(Msg{m.to, m.from, *a});
    } else if (const auto* p = std::get_if<QRecoverState>(&m.w)) {
      n.host->on_recover_state(m.from, *p, now_);
    }
    route(n, out);
  }

  void accepted(const NodeId& acceptor, const QAccept& m) {
    Acceptance& a = oracle_[m.ballot];
    a.value = m.value;
    a.by.insert(acceptor);
    if (a.chosen || a.by.size() < topology_.quorum()) return;
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
  Topology topology_;
  Time now_ = Time{} + std::chrono::hours(1);
  std::map<NodeId, Node> nodes_;
  std::deque<Msg> pool_;
  std::map<Ballot, Acceptance> oracle_;
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

}  // namespace

TEST_CASE("quorum trace: recovery never counts peers that are recovering themselves") {
  std::string story;
  auto v = recovering_peers_trace({}, story);
  CHECK_MESSAGE(v.empty(), story << lines(v));
  CHECK_MESSAGE(story.find("n3 voting false, n4 voting false") != std::string::npos, story);
  MESSAGE("as built: " << story);

  AcceptorHostConfig::Plants planted;
  planted.count_recovering_peers = true;
  std::string bad;
  auto caught = recovering_peers_trace(planted, bad);
  CHECK_MESSAGE(!caught.empty(), "counting recovering peers went unnoticed: " << bad);
  MESSAGE("planted (recovering peers count): " << bad << lines(caught));
}

TEST_CASE("quorum trace: a restarted acceptor waits out every deadline before it recovers") {
  std::string story;
  auto v = dead_vote_trace({}, story);
  CHECK_MESSAGE(v.empty(), story << lines(v));
  CHECK_MESSAGE(story.find("n2 voting right after its restart: false") != std::string::npos, story);
  MESSAGE("as built: " << story);

  AcceptorHostConfig::Plants planted;
  planted.skip_recovery_wait = true;
  std::string bad;
  auto caught = dead_vote_trace(planted, bad);
  CHECK_MESSAGE(!caught.empty(), "recovering at once went unnoticed: " << bad);
  MESSAGE("planted (no recovery wait): " << bad << lines(caught));
}
