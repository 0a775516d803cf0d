// Unit tests for the quorum register (grid/quorum.h): the acceptor's promise
// and lease rules, the local copy, and the proposer message by message with
// real acceptors answering. Time is driven by hand in milliseconds.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "common/quorum_math.h"
#include "grid/quorum.h"

using namespace rg;
using namespace rg::grid;

namespace {

const Time kStart = Time{} + std::chrono::hours(1);
Time at(int ms) { return kStart + milliseconds(ms); }

RegValue val(std::string data, std::string holder = "", std::uint64_t epoch = 0, std::int64_t lease = 0) {
  return RegValue{std::move(data), LeaseTag{std::move(holder), epoch, lease}};
}

QAccept accept_msg(const std::string& key, Ballot b, Ballot next, RegValue v) {
  return QAccept{key, b, next, 0, std::move(v), false, -1, {}};
}

// Reads the register as a counter and adds one; no lease.
// Replaces whatever is held (a lease included) with "x".
std::optional<RegValue> increment_leaseless(const std::optional<RegValue>&) { return val("x"); }

std::optional<RegValue> increment(const std::optional<RegValue>& cur) {
  int n = cur ? std::stoi(cur->data) : 0;
  return val(std::to_string(n + 1));
}

template <class T>
std::vector<T> sent(const QOut& out) {
  std::vector<T> list;
  for (const auto& s : out.sends)
    if (const T* m = std::get_if<T>(&s.msg)) list.push_back(*m);
  return list;
}

std::vector<NodeId> targets(const QOut& out) {
  std::vector<NodeId> list;
  for (const auto& s : out.sends) list.push_back(s.to);
  return list;
}

// Proposer n1 of n1..n3, with each member's acceptor; the test plays the
// network by choosing whose answers reach the proposer, and when.
struct Cluster {
  Topology topology;
  std::map<NodeId, QuorumAcceptor> acceptors;
  QuorumProposer proposer;
  QOut out;

  explicit Cluster(QuorumProposerConfig config = {}, std::vector<NodeId> members = {"n1", "n2", "n3"})
      : topology(std::move(members)), proposer(topology, "n1", config) {
    for (const auto& id : topology.members()) acceptors[id];
  }
  ConfigTag tag() const { return tag_of(topology); }
  void prepare(const QPrepare& m, const std::vector<NodeId>& from, int ms) {
    for (const auto& id : from) proposer.on_promise(id, acceptors[id].on_prepare(m, at(ms)), at(ms), out);
  }
  void accept(const QAccept& m, const std::vector<NodeId>& from, int ms) {
    for (const auto& id : from) proposer.on_accepted(id, acceptors[id].on_accept(m, at(ms)), at(ms), out);
  }
  // Writes `v` at `b` straight into the acceptors, as another proposer would.
  void seed(const std::vector<NodeId>& ids, Ballot b, const RegValue& v, int ms) {
    for (const auto& id : ids) {
      REQUIRE(acceptors[id].on_prepare(QPrepare{"k", b, 0, {}, tag_of(topology)}, at(ms)).ok);
      QAccept m = accept_msg("k", b, b, v);
      m.config = tag_of(topology);
      REQUIRE(acceptors[id].on_accept(m, at(ms)).verdict == AcceptVerdict::ok);
    }
  }
  // Runs one cas through the full or fast path with every member answering.
  CasResult run(QuorumProposer::Change change, int ms) {
    out.clear();
    proposer.cas("k", std::move(change), at(ms), out);
    // Outbid rounds back off, so time moves on while nothing is sent.
    for (int guard = 0; guard < 20 && out.results.empty(); ++guard) {
      if (out.sends.empty()) {
        proposer.tick(at(ms += 5), out);
        continue;
      }
      QOut step = std::move(out);
      out.clear();
      for (const auto& m : sent<QPrepare>(step)) prepare(m, topology.members(), ms);
      for (const auto& m : sent<QAccept>(step)) accept(m, topology.members(), ms);
    }
    REQUIRE(out.results.size() == 1);
    return out.results[0];
  }
};

}  // namespace

TEST_CASE("quorum acceptor: promises only ballots at least as high as any promised") {
  QuorumAcceptor a;
  QPromise p = a.on_prepare(QPrepare{"k", {2, 1}, 7, {}, {}}, at(0));
  CHECK(p.ok);
  CHECK(p.op == 7);
  CHECK(p.ballot == Ballot{2, 1});
  CHECK_FALSE(p.has_value);

  p = a.on_prepare(QPrepare{"k", {1, 2}, 8, {}, {}}, at(1));
  CHECK_FALSE(p.ok);
  CHECK(p.promised == Ballot{2, 1});

  CHECK(a.on_prepare(QPrepare{"k", {2, 1}, 7, {}, {}}, at(2)).ok);  // the same proposer asking again

  QAccepted r = a.on_accept(accept_msg("k", {1, 5}, {2, 5}, val("x")), at(3));
  CHECK(r.verdict == AcceptVerdict::outbid);
  CHECK(r.promised == Ballot{2, 1});

  r = a.on_accept(accept_msg("k", {2, 1}, {3, 1}, val("y")), at(4));
  CHECK(r.verdict == AcceptVerdict::ok);
  const auto* slot = a.find("k");
  REQUIRE(slot);
  CHECK(slot->promised == Ballot{3, 1});  // the fast-path promise
  CHECK(slot->accepted == Ballot{2, 1});
  CHECK(slot->value == val("y"));
  CHECK(slot->accepted_at == at(4));

  CHECK_FALSE(a.on_prepare(QPrepare{"k", {3, 0}, 9, {}, {}}, at(5)).ok);  // below the fast-path promise
  p = a.on_prepare(QPrepare{"k", {3, 2}, 9, {}, {}}, at(6));
  CHECK(p.ok);
  CHECK(p.has_value);
  CHECK(p.accepted == Ballot{2, 1});
  CHECK(p.value == val("y"));
  CHECK(a.find("other") == nullptr);
}

TEST_CASE("quorum acceptor: a duplicate accept is ok again and changes nothing") {
  QuorumAcceptor a;
  QAccept m = accept_msg("k", {1, 0}, {2, 0}, val("v", "n1", 1, 1000));
  REQUIRE(a.on_accept(m, at(0)).verdict == AcceptVerdict::ok);
  CHECK(a.on_accept(m, at(900)).verdict == AcceptVerdict::ok);
  CHECK(a.find("k")->accepted_at == at(0));  // the lease did not restart
  m.value.data = "other";
  CHECK(a.on_accept(m, at(901)).verdict == AcceptVerdict::outbid);
}

TEST_CASE("quorum acceptor: a lease refuses other holders and epochs until it runs out") {
  QuorumAcceptor a;
  REQUIRE(a.on_accept(accept_msg("k", {1, 0}, {2, 0}, val("a1", "a", 1, 1000)), at(0)).verdict ==
          AcceptVerdict::ok);

  QAccepted r = a.on_accept(accept_msg("k", {5, 1}, {6, 1}, val("b1", "b", 2, 1000)), at(500));
  CHECK(r.verdict == AcceptVerdict::lease_held);
  CHECK(r.holder == "a");
  CHECK(r.lease_left_ms == 500);
  CHECK(a.find("k")->value.data == "a1");  // nothing changed
  CHECK(a.find("k")->promised == Ballot{2, 0});

  r = a.on_accept(accept_msg("k", {5, 1}, {6, 1}, val("a2", "a", 2, 1000)), at(500));
  CHECK(r.verdict == AcceptVerdict::lease_held);  // same holder, other epoch

  // The holder's renewal is accepted and restarts the lease on our clock.
  r = a.on_accept(accept_msg("k", {5, 0}, {6, 0}, val("a3", "a", 1, 1000)), at(600));
  CHECK(r.verdict == AcceptVerdict::ok);
  r = a.on_accept(accept_msg("k", {7, 1}, {8, 1}, val("b2", "b", 2, 1000)), at(1500));
  CHECK(r.verdict == AcceptVerdict::lease_held);
  CHECK(r.lease_left_ms == 100);

  r = a.on_accept(accept_msg("k", {7, 1}, {8, 1}, val("b3", "b", 2, 1000)), at(1600));
  CHECK(r.verdict == AcceptVerdict::ok);
  CHECK(a.find("k")->value.lease.holder == "b");
}

TEST_CASE("quorum acceptor: a takeover's prepare is refused, unpromised, while another node's lease runs") {
  for (bool planted : {false, true}) {
    CAPTURE(planted);
    QuorumAcceptor a;
    a.plant_takeovers_outbid_lease(planted);
    REQUIRE(a.on_accept(accept_msg("k", {1, 0}, {2, 0}, val("a1", "a", 1, 1000)), at(0)).verdict ==
            AcceptVerdict::ok);
    QPromise p = a.on_prepare(QPrepare{"k", {5, 1}, 3, "b", {}}, at(400));
    if (planted) {  // the earlier rule: promised, so the holder's next renewal is outbid
      CHECK(p.ok);
      CHECK(a.on_accept(accept_msg("k", {2, 0}, {3, 0}, val("a2", "a", 1, 1000)), at(450)).verdict ==
            AcceptVerdict::outbid);
      continue;
    }
    CHECK_FALSE(p.ok);
    CHECK(p.lease_held);
    CHECK(p.holder == "a");
    CHECK(p.lease_left_ms == 600);
    CHECK(a.find("k")->promised == Ballot{2, 0});  // nothing promised
    // So the holder's fast-path renewal still goes through.
    CHECK(a.on_accept(accept_msg("k", {2, 0}, {3, 0}, val("a2", "a", 1, 1000)), at(450)).verdict ==
          AcceptVerdict::ok);
    // Other prepares (reads, the holder's own) are promised as before.
    CHECK(a.on_prepare(QPrepare{"k", {6, 1}, 4, {}, {}}, at(500)).ok);
    CHECK(a.on_prepare(QPrepare{"k", {7, 0}, 5, "a", {}}, at(510)).ok);
    // The lease runs from the renewal at 450: refused until 1450, then promised.
    CHECK(a.on_prepare(QPrepare{"k", {8, 1}, 6, "b", {}}, at(1449)).lease_held);
    CHECK(a.on_prepare(QPrepare{"k", {8, 1}, 6, "b", {}}, at(1450)).ok);
  }
}

TEST_CASE("quorum acceptor: a lease of 0 holds nothing, and a value without a lease neither") {
  QuorumAcceptor a;
  REQUIRE(a.on_accept(accept_msg("k", {1, 0}, {2, 0}, val("x", "a", 1, 0)), at(0)).verdict ==
          AcceptVerdict::ok);
  CHECK(a.on_accept(accept_msg("k", {2, 1}, {3, 1}, val("y", "b", 1, 0)), at(1)).verdict ==
        AcceptVerdict::ok);
  CHECK(a.on_accept(accept_msg("k", {3, 2}, {4, 2}, val("z")), at(2)).verdict == AcceptVerdict::ok);
}

TEST_CASE("quorum copy: keeps the commit with the highest ballot per key") {
  QuorumCopy copy;
  CHECK(copy.find("k") == nullptr);
  CHECK(copy.apply(QCommit{"k", {2, 0}, val("two")}));
  CHECK_FALSE(copy.apply(QCommit{"k", {1, 5}, val("one")}));
  CHECK_FALSE(copy.apply(QCommit{"k", {2, 0}, val("two")}));
  CHECK(copy.find("k")->value.data == "two");
  CHECK(copy.apply(QCommit{"k", {2, 1}, val("three")}));
  CHECK(copy.apply(QCommit{"j", {1, 0}, val("other key")}));
  CHECK(copy.find("k")->value.data == "three");
  CHECK(copy.all().size() == 2);
}

TEST_CASE("quorum proposer: prepare, promises, accept, accepted, commit") {
  Cluster c;
  std::uint64_t op = c.proposer.cas("k", increment, at(0), c.out);
  auto prepares = sent<QPrepare>(c.out);
  REQUIRE(prepares.size() == 1);
  CHECK(targets(c.out) == std::vector<NodeId>{""});  // every member, n1's own acceptor included
  CHECK(prepares[0].ballot == Ballot{1, 0});
  CHECK(prepares[0].op == op);
  CHECK(c.proposer.pending() == 1);

  c.out.clear();
  c.prepare(prepares[0], {"n2"}, 1);
  c.prepare(prepares[0], {"n2"}, 1);  // twice from one member counts once
  CHECK(c.out.sends.empty());
  c.prepare(prepares[0], {"n3"}, 2);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  CHECK(c.out.sends.size() == 1);
  CHECK(accepts[0].ballot == Ballot{1, 0});
  CHECK(accepts[0].next == Ballot{2, 0});
  CHECK(accepts[0].value == val("1"));

  c.out.clear();
  c.prepare(prepares[0], {"n1"}, 3);  // a late promise changes nothing
  c.accept(accepts[0], {"n3", "n3"}, 3);
  CHECK(c.out.sends.empty());
  CHECK(c.out.results.empty());
  c.accept(accepts[0], {"n2"}, 4);
  auto commits = sent<QCommit>(c.out);
  REQUIRE(commits.size() == 1);
  CHECK(targets(c.out) == std::vector<NodeId>{""});
  CHECK(commits[0].ballot == Ballot{1, 0});
  CHECK(commits[0].value == val("1"));
  REQUIRE(c.out.results.size() == 1);
  const CasResult& r = c.out.results[0];
  CHECK(r.op == op);
  CHECK(r.outcome == CasOutcome::committed);
  CHECK(r.value == val("1"));
  CHECK(r.started == at(0));
  CHECK(std::string(to_string(r.outcome)) == "committed");
  CHECK(c.proposer.pending() == 0);

  c.out.clear();
  c.accept(accepts[0], {"n1"}, 5);  // late answers of a finished operation
  c.proposer.tick(at(1000), c.out);
  CHECK(c.out.sends.empty());
  CHECK(c.out.results.empty());
}

TEST_CASE("quorum proposer: the change sees the value of the highest accepted ballot") {
  Cluster c;
  c.seed({"n2"}, {3, 2}, val("7"), 0);
  c.seed({"n3"}, {2, 1}, val("4"), 0);
  CasResult r = c.run(increment, 1);
  CHECK(r.outcome == CasOutcome::committed);
  CHECK(r.value == val("8"));
}

TEST_CASE("quorum proposer: a refusing change fails the precondition and writes nothing") {
  Cluster c;
  c.seed({"n1", "n2", "n3"}, {1, 1}, val("5"), 0);
  std::optional<RegValue> seen;
  CasResult r = c.run(
      [&](const std::optional<RegValue>& cur) {
        seen = cur;
        return std::optional<RegValue>();
      },
      1);
  CHECK(r.outcome == CasOutcome::precondition_failed);
  CHECK(r.value == val("5"));
  CHECK(seen == val("5"));
  CHECK(c.out.sends.empty());  // no accept, no commit
  for (const auto& [id, a] : c.acceptors) CHECK(a.find("k")->value == val("5"));
}

TEST_CASE("quorum proposer: a refused change tells the longest lease the answering acceptors hold for the value") {
  Cluster c;
  c.seed({"n2", "n3"}, {1, 1}, val("5", "a", 1, 1000), 0);
  c.seed({"n1"}, {1, 1}, val("5", "a", 1, 1000), 300);  // accepted later: its lease runs longer
  // n1 and n2 answer first and make the majority: the longest of theirs.
  auto refuse = [](const std::optional<RegValue>&) { return std::optional<RegValue>(); };
  CasResult r = c.run(refuse, 500);
  CHECK(r.outcome == CasOutcome::precondition_failed);
  REQUIRE(r.value_lease_left_ms);
  CHECK(*r.value_lease_left_ms > 500);  // n1's, not n2's (the prepare went out a few ms after 500)
  CHECK(*r.value_lease_left_ms <= 800);
  r = c.run(refuse, 2000);  // run out everywhere
  CHECK(r.value_lease_left_ms == 0);
  r = c.run(increment_leaseless, 2001);  // a write says nothing of leases
  CHECK(r.outcome == CasOutcome::committed);
  CHECK_FALSE(r.value_lease_left_ms);
}

TEST_CASE("quorum proposer: a second cas on the key takes the fast path") {
  Cluster c;
  REQUIRE(c.run(increment, 0).outcome == CasOutcome::committed);

  c.out.clear();
  c.proposer.cas("k", increment, at(10), c.out);
  CHECK(sent<QPrepare>(c.out).empty());
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  CHECK(accepts[0].ballot == Ballot{2, 0});
  CHECK(accepts[0].next == Ballot{3, 0});
  CHECK(accepts[0].value == val("2"));
  c.out.clear();
  c.accept(accepts[0], {"n1", "n3"}, 11);
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::committed);
  CHECK(c.out.results[0].value == val("2"));
  CHECK(c.out.results[0].reason.find("fast") != std::string::npos);
}

TEST_CASE("quorum proposer: a change refusing the remembered value asks a majority first") {
  Cluster c;
  REQUIRE(c.run(increment, 0).outcome == CasOutcome::committed);
  c.seed({"n2", "n3"}, {2, 2}, val("10"), 5);  // the remembered "1" is stale now
  auto only_from_10 = [](const std::optional<RegValue>& cur) {
    return cur && cur->data == "10" ? std::optional<RegValue>(val("11")) : std::nullopt;
  };
  c.out.clear();
  c.proposer.cas("k", only_from_10, at(10), c.out);
  CHECK(c.out.results.empty());
  CHECK(sent<QAccept>(c.out).empty());
  auto prepares = sent<QPrepare>(c.out);
  REQUIRE(prepares.size() == 1);
  c.out.clear();
  c.prepare(prepares[0], {"n2", "n3"}, 11);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  CHECK(accepts[0].value == val("11"));
}

TEST_CASE("quorum proposer: a fast path outbid by another proposer falls back to prepare") {
  Cluster c;
  REQUIRE(c.run(increment, 0).outcome == CasOutcome::committed);
  // n3 writes 10 at a higher ballot in between.
  c.seed({"n2", "n3"}, {4, 2}, val("10"), 5);

  c.out.clear();
  c.proposer.cas("k", increment, at(10), c.out);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  c.out.clear();
  c.accept(accepts[0], {"n2", "n3"}, 11);
  auto prepares = sent<QPrepare>(c.out);
  REQUIRE(prepares.size() == 1);
  CHECK(prepares[0].ballot == Ballot{5, 0});  // above everything seen
  c.out.clear();
  c.prepare(prepares[0], {"n2", "n3"}, 12);
  accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  CHECK(accepts[0].value == val("11"));
}

TEST_CASE("quorum proposer: outbid at prepare retries with a higher ballot after a backoff") {
  Cluster c;
  c.proposer.cas("k", increment, at(0), c.out);
  auto prepares = sent<QPrepare>(c.out);
  // n2's proposer got in first at n2 and n3.
  for (const char* id : {"n2", "n3"}) REQUIRE(c.acceptors[id].on_prepare(QPrepare{"k", {1, 1}, 0, {}, c.tag()}, at(0)).ok);
  c.out.clear();
  c.prepare(prepares[0], {"n2"}, 1);
  CHECK(c.out.sends.empty());
  c.prepare(prepares[0], {"n3"}, 1);
  CHECK(c.out.sends.empty());  // backing off
  c.proposer.tick(at(2), c.out);
  CHECK(c.out.sends.empty());  // the backoff is at least half of 5 ms
  c.proposer.tick(at(8), c.out);
  prepares = sent<QPrepare>(c.out);
  REQUIRE(prepares.size() == 1);
  CHECK(prepares[0].ballot == Ballot{2, 0});
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2"}, 9);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  c.out.clear();
  c.accept(accepts[0], {"n1", "n2"}, 10);
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::committed);
  CHECK(c.out.results[0].started == at(0));
}

TEST_CASE("quorum proposer: after an outbid accept, its own partly accepted value is completed") {
  Cluster c;
  int calls = 0;
  auto counted = [&](const std::optional<RegValue>& cur) {
    ++calls;
    return increment(cur);
  };
  c.proposer.cas("k", counted, at(0), c.out);
  auto prepares = sent<QPrepare>(c.out);
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2", "n3"}, 1);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  // n1 accepts; n2 and n3 promised a rival's higher ballot meanwhile.
  for (const char* id : {"n2", "n3"}) REQUIRE(c.acceptors[id].on_prepare(QPrepare{"k", {1, 2}, 0, {}, c.tag()}, at(1)).ok);
  c.out.clear();
  c.accept(accepts[0], {"n1", "n2", "n3"}, 2);
  CHECK(c.out.results.empty());
  c.proposer.tick(at(10), c.out);
  prepares = sent<QPrepare>(c.out);
  REQUIRE(prepares.size() == 1);
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2"}, 11);
  accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  CHECK(accepts[0].value == val("1"));  // not "2": the first attempt may already count
  CHECK(calls == 1);
}

TEST_CASE("quorum proposer: outbid in every round gives up after max_rounds") {
  QuorumProposerConfig config;
  config.max_rounds = 2;
  Cluster c(config);
  c.proposer.cas("k", increment, at(0), c.out);
  for (int round = 0; round < 2; ++round) {
    auto prepares = sent<QPrepare>(c.out);
    REQUIRE(prepares.size() == 1);
    Ballot rival{prepares[0].ballot.counter, 2};
    for (const char* id : {"n2", "n3"}) REQUIRE(c.acceptors[id].on_prepare(QPrepare{"k", rival, 0, {}, c.tag()}, at(0)).ok);
    c.out.clear();
    c.prepare(prepares[0], {"n2", "n3"}, round * 20 + 1);
    c.proposer.tick(at(round * 20 + 19), c.out);
  }
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::no_quorum);
  CHECK(c.out.results[0].reason.find("2 rounds") != std::string::npos);
}

TEST_CASE("quorum proposer: silence is resent to, then times out as no_quorum") {
  Cluster c;
  c.proposer.cas("k", increment, at(0), c.out);
  auto prepares = sent<QPrepare>(c.out);
  c.out.clear();
  c.prepare(prepares[0], {"n2"}, 1);
  c.proposer.tick(at(50), c.out);
  CHECK(c.out.sends.empty());
  c.proposer.tick(at(100), c.out);  // timeout / 5: ask those who did not answer
  CHECK(targets(c.out) == std::vector<NodeId>{"n1", "n3"});
  CHECK(sent<QPrepare>(c.out).size() == 2);
  c.out.clear();
  c.proposer.tick(at(499), c.out);
  CHECK(c.out.results.empty());
  c.proposer.tick(at(500), c.out);
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::no_quorum);
  CHECK(c.out.results[0].started == at(0));
  CHECK(c.out.results[0].reason.find("no majority") != std::string::npos);
  CHECK(c.proposer.pending() == 0);
}

TEST_CASE("quorum proposer: a racing write outbid while the rest are silent retries at the resend") {
  // Five members, n5 dead: a rival split the four live acceptors 2-2.
  auto run = [](CasMode mode, bool planted) {
    QuorumProposerConfig config;
    config.plant_racer_waits = planted;
    Cluster c(config, {"n1", "n2", "n3", "n4", "n5"});
    c.proposer.cas("k", increment, at(0), c.out, mode);
    auto prepares = sent<QPrepare>(c.out);
    c.out.clear();
    c.prepare(prepares[0], {"n1", "n2", "n3"}, 1);
    auto accepts = sent<QAccept>(c.out);
    REQUIRE(accepts.size() == 1);
    for (const char* id : {"n3", "n4"}) REQUIRE(c.acceptors[id].on_prepare(QPrepare{"k", {1, 2}, 0, {}, c.tag()}, at(1)).ok);
    c.out.clear();
    c.accept(accepts[0], {"n1", "n2", "n3", "n4"}, 2);
    CHECK(c.out.sends.empty());
    c.proposer.tick(at(101), c.out);  // the resend: timeout / 5 after the accept
    bool asked_n5_again = targets(c.out) == std::vector<NodeId>{"n5"};
    c.out.clear();
    c.proposer.tick(at(112), c.out);  // past any backoff of the first retry
    auto retried = sent<QPrepare>(c.out);
    CHECK(c.out.results.empty());
    return std::pair{asked_n5_again, retried.empty() ? Ballot{} : retried[0].ballot};
  };
  auto [raced_waits, raced_retry] = run(CasMode::race, false);
  CHECK_FALSE(raced_waits);
  CHECK(Ballot{1, 2} < raced_retry);  // above the rival's
  auto [plain_waits, plain_retry] = run(CasMode::plain, false);
  CHECK(plain_waits);
  CHECK(plain_retry == Ballot{});
  auto [planted_waits, planted_retry] = run(CasMode::race, true);
  CHECK(planted_waits);  // the plant: the reservation waits out its deadline again
  CHECK(planted_retry == Ballot{});
}

Topology grown(std::uint64_t version, std::vector<NodeId> ids) {
  std::vector<Topology::Member> members;
  for (const auto& id : ids) members.push_back({id, static_cast<MemberIndex>(id.back() - '1')});
  return Topology(version, members);
}

TEST_CASE("topology: version 1 keeps the sorted positions and the fingerprint; later ones keep their indices") {
  Topology v1({"n3", "n1", "n2"});
  CHECK(v1.version() == 1);
  CHECK(Topology(1, {{"n1", 0}, {"n2", 1}, {"n3", 2}}) == v1);
  CHECK(Topology(1, {{"n1", 0}, {"n2", 1}, {"n3", 2}}).fingerprint() == v1.fingerprint());
  Topology v3(3, {{"n1", 0}, {"n3", 2}, {"n4", 3}});  // n2 removed, n4 added
  CHECK(v3.index_of("n3") == MemberIndex{2});
  CHECK(v3.index_of("n4") == MemberIndex{3});
  CHECK_FALSE(v3.contains("n2"));
  CHECK(v3.quorum() == 2);
  CHECK(v3.fingerprint() != Topology(4, {{"n1", 0}, {"n3", 2}, {"n4", 3}}).fingerprint());
  CHECK(v3.fingerprint() != Topology(3, {{"n1", 0}, {"n3", 2}, {"n4", 4}}).fingerprint());
  CHECK_THROWS_AS(Topology(2, {{"n1", 0}, {"n2", 0}}), std::invalid_argument);
  CHECK_THROWS_AS(Topology(2, {{"n1", 0}, {"n2", 255}}), std::invalid_argument);
  CHECK_THROWS_AS(Topology(0, {{"n1", 0}}), std::invalid_argument);
}

TEST_CASE("quorum acceptor: refuses a configuration older than one seen, or another one of the same version") {
  for (bool planted : {false, true}) {
    QuorumAcceptor a;
    a.plant_no_config_fence(planted);
    ConfigTag v1 = tag_of(Topology({"n1", "n2", "n3"}));
    ConfigTag v2 = tag_of(grown(2, {"n1", "n2", "n3", "n4"}));
    ConfigTag other_v2 = tag_of(grown(2, {"n1", "n2", "n3", "n5"}));
    auto before = a.changes();
    QPromise p = a.on_prepare(QPrepare{"k", {1, 0}, 1, {}, v2}, at(0));
    CHECK(p.ok);
    CHECK(a.changes() > before);  // the tag seen is made durable with the promise
    if (!planted) CHECK(a.config_seen() == v2);
    std::uint64_t counter = 9;
    for (ConfigTag old : {v1, other_v2}) {
      counter += 2;  // above the planted run's earlier `next`
      QPromise q = a.on_prepare(QPrepare{"k", {counter, 1}, 2, {}, old}, at(1));
      QAccepted r = a.on_accept(QAccept{"k", {counter, 1}, {counter + 1, 1}, 3, val("x"), false, -1, old}, at(1));
      CHECK(q.stale_config != planted);
      CHECK(q.ok == planted);
      CHECK((r.verdict == AcceptVerdict::stale_config) != planted);
      if (!planted) {
        CHECK(q.config_seen == v2);
        CHECK(r.config_seen == v2);
        CHECK(a.find("k")->promised == Ballot{1, 0});  // nothing promised or accepted
        CHECK_FALSE(a.find("k")->has_value);
      }
    }
  }
}

TEST_CASE("quorum proposer: a member change commits only once majorities of both configurations accepted") {
  Cluster c;
  c.acceptors["n4"];
  Topology next = grown(2, {"n1", "n2", "n3", "n4"});
  c.proposer.change_members("k", increment, next, at(0), c.out);
  auto prepares = sent<QPrepare>(c.out);
  REQUIRE(prepares.size() == 1);
  CHECK(prepares[0].config == tag_of(Topology({"n1", "n2", "n3"})));
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2"}, 1);
  CHECK(targets(c.out) == std::vector<NodeId>{"", "n4"});  // the accepts: every one of the current three, and n4
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 2);
  c.out.clear();
  c.accept(accepts[0], {"n1", "n2"}, 2);  // a majority of the old three, 2 of the new four
  CHECK(c.out.results.empty());
  c.accept(accepts[0], {"n4"}, 3);
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::committed);
  // Refused by two of the new four while only one of the old three accepted: lost.
  Cluster d;
  d.acceptors["n4"];
  d.proposer.change_members("k", increment, next, at(0), d.out);
  prepares = sent<QPrepare>(d.out);
  d.out.clear();
  d.prepare(prepares[0], {"n1", "n2", "n3"}, 1);
  accepts = sent<QAccept>(d.out);
  d.out.clear();
  for (const char* id : {"n3", "n4"}) REQUIRE(d.acceptors[id].on_prepare(QPrepare{"k", {9, 2}, 0, {}, prepares[0].config}, at(1)).ok);
  d.accept(accepts[0], {"n1", "n2", "n3", "n4"}, 2);
  CHECK(d.out.results.empty());  // lost at the new four: a retry is under way
  d.proposer.tick(at(12), d.out);
  CHECK_FALSE(sent<QPrepare>(d.out).empty());
}

TEST_CASE("quorum proposer: an answer for a newer configuration ends the operation and names it") {
  Cluster c;
  ConfigTag v2 = tag_of(grown(2, {"n1", "n2", "n3", "n4"}));
  REQUIRE(c.acceptors["n2"].on_prepare(QPrepare{"other", {1, 3}, 0, {}, v2}, at(0)).ok);
  c.proposer.cas("k", increment, at(0), c.out);
  auto prepares = sent<QPrepare>(c.out);
  c.out.clear();
  c.prepare(prepares[0], {"n1"}, 1);
  CHECK(c.out.results.empty());
  c.prepare(prepares[0], {"n2"}, 1);
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::no_quorum);
  CHECK(c.out.results[0].stale_config);
  CHECK(c.out.results[0].reason.find("stale configuration: n2 has seen version 2") != std::string::npos);
  REQUIRE(c.out.stale.size() == 1);
  CHECK(c.out.stale[0].from == "n2");
  CHECK(c.out.stale[0].seen == v2);
}

TEST_CASE("quorum proposer: after adopting a newer configuration, operations under way keep theirs and later ones run under it") {
  Cluster c;
  c.acceptors["n4"];
  CHECK(c.run(increment, 0).outcome == CasOutcome::committed);  // the fast path is remembered now
  c.out.clear();
  c.proposer.cas("k", increment, at(10), c.out);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);  // fast path, under version 1
  c.out.clear();
  c.accept(accepts[0], {"n1"}, 11);
  Topology next = grown(2, {"n1", "n2", "n3", "n4"});
  c.proposer.adopt(next, at(12), c.out);
  CHECK(c.proposer.topology() == next);
  CHECK(c.out.sends.empty());  // nothing restarted
  c.accept(accepts[0], {"n2"}, 13);  // two of the three it began with
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::committed);
  // Its commit goes to those three by name: "" is the node's list, now four.
  CHECK(targets(c.out) == std::vector<NodeId>{"n1", "n2", "n3"});
  c.out.clear();
  c.proposer.cas("k", increment, at(14), c.out);
  auto prepares = sent<QPrepare>(c.out);
  REQUIRE(prepares.size() == 1);  // the fast path is forgotten: a full round, tagged with the new configuration
  CHECK(prepares[0].config == tag_of(next));
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2"}, 15);
  CHECK(sent<QAccept>(c.out).empty());  // two of four is no majority any more
  c.prepare(prepares[0], {"n4"}, 15);
  CHECK(sent<QAccept>(c.out).size() == 1);
  c.out.clear();
  c.proposer.adopt(Topology({"n1", "n2"}), at(16), c.out);  // an older version: ignored
  CHECK(c.proposer.topology() == next);
  // Left out of a newer configuration: no more operations.
  c.proposer.adopt(grown(3, {"n2", "n3", "n4"}), at(17), c.out);
  c.out.clear();
  c.proposer.cas("other", increment, at(18), c.out);
  CHECK(c.out.sends.empty());
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::no_quorum);
  CHECK(c.out.results[0].reason == "not a member of configuration 3");
}

TEST_CASE("quorum proposer: a member change's commit reaches the added members") {
  Cluster d;
  d.acceptors["n4"];
  d.proposer.change_members("k", increment, grown(2, {"n1", "n2", "n3", "n4"}), at(0), d.out);
  auto prepares = sent<QPrepare>(d.out);
  d.out.clear();
  d.prepare(prepares[0], {"n1", "n2", "n3"}, 1);
  auto accepts = sent<QAccept>(d.out);
  d.out.clear();
  d.accept(accepts[0], {"n1", "n2", "n3"}, 2);
  REQUIRE(d.out.results.size() == 1);
  CHECK_FALSE(d.out.results[0].stale_config);
  CHECK(targets(d.out) == std::vector<NodeId>{"", "n4"});  // everyone of the old three, and n4
  CHECK(sent<QCommit>(d.out).size() == 2);
}

TEST_CASE("quorum proposer: operations on one key run one at a time, in order") {
  Cluster c;
  std::uint64_t first = c.proposer.cas("k", increment, at(0), c.out);
  std::uint64_t second = c.proposer.cas("k", increment, at(1), c.out);
  c.proposer.cas("j", increment, at(1), c.out);  // another key goes ahead at once
  CHECK(sent<QPrepare>(c.out).size() == 2);
  CHECK(c.proposer.pending() == 3);
  auto prepares = sent<QPrepare>(c.out);
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2"}, 2);
  auto accepts = sent<QAccept>(c.out);
  c.out.clear();
  c.accept(accepts[0], {"n1", "n2"}, 3);
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].op == first);
  // The second starts on the fast path as soon as the first is done.
  accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  CHECK(accepts[0].op == second);
  CHECK(accepts[0].value == val("2"));
}

TEST_CASE("quorum proposer: a majority honouring another holder's lease gives lease_held") {
  Cluster c;
  c.seed({"n1", "n2", "n3"}, {1, 2}, val("3", "n9", 4, 1000), 0);
  auto take = [](const std::optional<RegValue>& cur) {
    return val(cur->data, "n1", cur->lease.epoch + 1, 1000);
  };
  c.proposer.cas("k", take, at(100), c.out);
  auto prepares = sent<QPrepare>(c.out);
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2"}, 100);  // below the seeding ballot: outbid
  c.proposer.tick(at(108), c.out);
  prepares = sent<QPrepare>(c.out);
  REQUIRE(prepares.size() == 1);
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2", "n3"}, 108);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  c.out.clear();
  c.accept(accepts[0], {"n1"}, 110);
  CHECK(c.out.results.empty());
  c.accept(accepts[0], {"n2"}, 150);
  REQUIRE(c.out.results.size() == 1);
  const CasResult& r = c.out.results[0];
  CHECK(r.outcome == CasOutcome::lease_held);
  CHECK(r.reason.find("n9") != std::string::npos);
  CHECK(r.reason.find("890 ms") != std::string::npos);
  CHECK(r.started == at(100));
  c.out.clear();
  c.proposer.tick(at(2000), c.out);  // no automatic retry
  CHECK(c.out.sends.empty());
  CHECK(c.proposer.pending() == 0);

  // After the lease has run out on the acceptors the same change commits.
  CasResult later = c.run(take, 1200);
  CHECK(later.outcome == CasOutcome::committed);
  CHECK(later.value == val("3", "n1", 5, 1000));
}

TEST_CASE("quorum proposer: a takeover refused at prepare by a majority's lease ends lease_held") {
  Cluster c;
  c.seed({"n1", "n2", "n3"}, {1, 2}, val("3", "n9", 4, 1000), 0);
  auto take = [](const std::optional<RegValue>& cur) { return val(cur->data); };
  c.proposer.cas("k", take, at(100), c.out, CasMode::takeover);
  auto prepares = sent<QPrepare>(c.out);
  REQUIRE(prepares.size() == 1);
  CHECK(prepares[0].takeover_by == "n1");
  c.out.clear();
  c.prepare(prepares[0], {"n2"}, 100);
  CHECK(c.out.results.empty());
  c.prepare(prepares[0], {"n3"}, 110);
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::lease_held);
  CHECK(c.out.results[0].reason.find("n9") != std::string::npos);
  CHECK(c.out.results[0].reason.find("refused the prepare") != std::string::npos);
  for (const auto& id : {"n1", "n2", "n3"}) CHECK(c.acceptors[id].find("k")->promised == Ballot{1, 2});
  // Not marked a takeover: promised as before, refused only at accept, and
  // the promises it got outbid the holder's next fast-path renewal.
  CasResult plain = c.run(take, 200);
  CHECK(plain.outcome == CasOutcome::lease_held);
  CHECK(c.acceptors["n2"].find("k")->promised > Ballot{1, 2});
}

TEST_CASE("quorum proposer: a prepare refused for a lease is asked again once that lease has run out") {
  // Four members, one silent (a dead master): the majority needs all three
  // others, one of which still held the dead master's lease at the prepare.
  for (bool planted : {false, true}) {
    CAPTURE(planted);
    QuorumProposerConfig pc;
    pc.plant_no_lease_reask = planted;
    Cluster c(pc, {"n1", "n2", "n3", "n4"});
    c.seed({"n2"}, {0, 2}, val("3", "n9", 4, 150), 0);  // n2 holds n9's lease until 150 ms
    auto take = [](const std::optional<RegValue>& cur) { return val(cur ? cur->data : "0"); };
    c.proposer.cas("k", take, at(100), c.out, CasMode::takeover);
    auto prepares = sent<QPrepare>(c.out);
    REQUIRE(prepares.size() == 1);
    c.out.clear();
    c.prepare(prepares[0], {"n1", "n3", "n2"}, 100);  // n2: lease_held, 50 ms left; n4 silent
    CHECK(c.out.results.empty());
    CHECK(sent<QAccept>(c.out).empty());
    c.out.clear();
    c.proposer.tick(at(200), c.out);  // the first resend, after the lease ran out
    auto to = targets(c.out);
    CHECK((std::find(to.begin(), to.end(), "n2") != to.end()) == !planted);
    if (planted) continue;
    c.out.clear();
    c.prepare(prepares[0], {"n2"}, 200);
    CHECK(sent<QAccept>(c.out).size() == 1);  // a majority promised: the accept goes out (to all)
  }
}

TEST_CASE("quorum proposer: answers from non-members and for unknown operations are ignored") {
  Cluster c;
  c.proposer.cas("k", increment, at(0), c.out);
  auto prepares = sent<QPrepare>(c.out);
  c.out.clear();
  QuorumAcceptor stranger;
  c.proposer.on_promise("x9", stranger.on_prepare(prepares[0], at(1)), at(1), c.out);
  QPromise wrong_op = c.acceptors["n2"].on_prepare(prepares[0], at(1));
  wrong_op.op += 100;
  c.proposer.on_promise("n2", wrong_op, at(1), c.out);
  c.prepare(prepares[0], {"n3"}, 1);
  CHECK(c.out.sends.empty());
  CHECK_THROWS_AS(QuorumProposer(Topology({"n1", "n2"}), "n7"), std::invalid_argument);
}

TEST_CASE("quorum proposer: ballots start above the floor, so a restarted process never reuses one") {
  using namespace rg::grid;
  QuorumProposerConfig cfg;
  cfg.ballot_floor = 1'000'000;
  QuorumProposer p(rg::Topology({"n1", "n2", "n3"}), "n1", cfg);
  QOut out;
  p.cas("k", [](const std::optional<RegValue>&) { return RegValue{"v", {}}; }, rg::Time{}, out);
  REQUIRE(!out.sends.empty());
  const auto* prep = std::get_if<QPrepare>(&out.sends.front().msg);
  REQUIRE(prep);
  CHECK(prep->ballot.counter > 1'000'000u);
}

TEST_CASE("quorum acceptor: a recovering acceptor adopts the highest promise and accepted value") {
  using namespace rg::grid;
  QuorumAcceptor a;
  rg::Time t0{};
  rg::Time t1 = t0 + std::chrono::milliseconds(500);
  a.adopt(QSlotState{"k", {3, 1}, true, {3, 1}, RegValue{"old", {"n1", 1, 1000}}}, t0);
  a.adopt(QSlotState{"k", {9, 2}, true, {7, 2}, RegValue{"new", {"n2", 2, 1000}}}, t1);
  a.adopt(QSlotState{"k", {4, 0}, true, {4, 0}, RegValue{"older", {}}}, t1);
  const auto* s = a.find("k");
  REQUIRE(s);
  CHECK(s->promised == Ballot{9, 2});
  CHECK(s->accepted == Ballot{7, 2});
  CHECK(s->value.data == "new");
  CHECK(s->accepted_at == t1);  // the adopted lease runs from recovery: only ever longer
  // A ballot below the adopted promise is refused; the adopted lease holds.
  CHECK_FALSE(a.on_prepare(QPrepare{"k", {8, 0}, 1, {}, {}}, t1).ok);
  auto r = a.on_accept(QAccept{"k", {10, 0}, {11, 0}, 2, RegValue{"x", {"n3", 3, 1000}}, false, -1, {}}, t1 + std::chrono::milliseconds(10));
  CHECK(r.verdict == AcceptVerdict::lease_held);
  auto exported = a.export_state();
  REQUIRE(exported.size() == 1);
  CHECK(exported[0].value.data == "new");
}

TEST_CASE("quorum acceptor: every accept of a new value restarts the lease, even with an unchanged tag") {
  // Renewals keep the tag; the holder counts its lease from the one that
  // committed, so the acceptor must too.
  QuorumAcceptor a;
  REQUIRE(a.on_accept(accept_msg("k", {1, 0}, {2, 0}, val("a1", "a", 1, 1000)), at(0)).verdict ==
          AcceptVerdict::ok);
  REQUIRE(a.on_accept(accept_msg("k", {3, 0}, {4, 0}, val("a1 again", "a", 1, 1000)), at(800)).verdict ==
          AcceptVerdict::ok);
  CHECK(a.find("k")->accepted_at == at(800));
  CHECK(a.on_accept(accept_msg("k", {5, 1}, {6, 1}, val("b1", "b", 2, 1000)), at(1000)).verdict ==
        AcceptVerdict::lease_held);
}

TEST_CASE("quorum acceptor: the value held, written back by another node, leaves the lease clock alone") {
  // A read by a non-holder must not keep a dead holder's lease alive; the
  // holder's own retry of the same value must restart it (it counts from
  // its operation's start).
  QuorumAcceptor a;
  REQUIRE(a.on_accept(accept_msg("k", {1, 0}, {2, 0}, val("a1", "a", 1, 1000)), at(0)).verdict ==
          AcceptVerdict::ok);
  REQUIRE(a.on_accept(accept_msg("k", {3, 1}, {4, 1}, val("a1", "a", 1, 1000)), at(600)).verdict ==
          AcceptVerdict::ok);
  CHECK(a.find("k")->accepted == Ballot{3, 1});
  CHECK(a.find("k")->accepted_at == at(0));
  CHECK(a.on_accept(accept_msg("k", {5, 2}, {6, 2}, val("b1", "b", 2, 1000)), at(1000)).verdict ==
        AcceptVerdict::ok);

  QAccept retry = accept_msg("k", {7, 0}, {8, 0}, val("a2", "a", 1, 1000));
  QuorumAcceptor h;
  REQUIRE(h.on_accept(retry, at(0)).verdict == AcceptVerdict::ok);
  retry.ballot = {9, 0};
  retry.from_holder = true;
  REQUIRE(h.on_accept(retry, at(600)).verdict == AcceptVerdict::ok);
  CHECK(h.find("k")->accepted_at == at(600));

  // The planted earlier rule: the read restarts the clock too.
  QuorumAcceptor p;
  p.plant_every_accept_restarts_lease(true);
  REQUIRE(p.on_accept(accept_msg("k", {1, 0}, {2, 0}, val("a1", "a", 1, 1000)), at(0)).verdict ==
          AcceptVerdict::ok);
  REQUIRE(p.on_accept(accept_msg("k", {3, 1}, {4, 1}, val("a1", "a", 1, 1000)), at(600)).verdict ==
          AcceptVerdict::ok);
  CHECK(p.on_accept(accept_msg("k", {5, 2}, {6, 2}, val("b1", "b", 2, 1000)), at(1000)).verdict ==
        AcceptVerdict::lease_held);
}

TEST_CASE("quorum proposer: its accepts say whether it is the holder the value names") {
  Cluster c;
  c.proposer.cas("k", [](const std::optional<RegValue>&) { return val("mine", "n1", 1, 1000); }, at(0), c.out,
                 CasMode::holds_lease);
  auto prepares = sent<QPrepare>(c.out);
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2"}, 1);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  CHECK(accepts[0].from_holder);
  c.accept(accepts[0], {"n1", "n2"}, 2);
  REQUIRE(c.out.results.size() == 1);
  CasResult other = c.run([](const std::optional<RegValue>&) { return val("theirs", "n2", 2, 0); }, 3000);
  REQUIRE(other.outcome == CasOutcome::committed);
  c.out.clear();
  c.proposer.cas("k", [](const std::optional<RegValue>& cur) { return cur; }, at(3100), c.out);
  for (int guard = 0; guard < 5 && sent<QAccept>(c.out).empty(); ++guard) {
    QOut step = std::move(c.out);
    c.out.clear();
    for (const auto& m : sent<QPrepare>(step)) c.prepare(m, c.topology.members(), 3100);
  }
  accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  CHECK_FALSE(accepts[0].from_holder);  // a read of n2's value by n1
}

// A restarted master's first read names itself as the holder, but it counts
// no lease from it: a plain write-back, which must not restart its earlier
// process's lease (that held every takeover off for one more lease).
TEST_CASE("quorum proposer: only a write the holder counts its lease from is sent as the holder's") {
  Cluster c;
  c.seed({"n1", "n2"}, {0, 2}, val("mine", "n1", 1, 1000), 0);  // its earlier process's, by n1 and n2
  c.out.clear();
  c.proposer.cas("k", [](const std::optional<RegValue>& cur) { return cur; }, at(400), c.out);
  c.prepare(sent<QPrepare>(c.out).at(0), {"n1", "n2", "n3"}, 400);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  CHECK_FALSE(accepts[0].from_holder);
  CHECK(accepts[0].found_lease_left_ms == 600);  // the longest the promising acceptors still held
  c.accept(accepts[0], {"n1", "n2", "n3"}, 400);
  CHECK(c.acceptors["n1"].find("k")->accepted_at == at(0));  // held it: clock untouched
  // n3 did not hold it: its lease ends with the others' (plus a tenth and a ms)
  CHECK(c.acceptors["n3"].find("k")->accepted_at == at(400 - (1000 - 661)));
  // Its commit tells every reader how much of the lease was left, so that
  // nobody counts the entry as written just now.
  auto commits = sent<QCommit>(c.out);
  REQUIRE(commits.size() == 1);
  CHECK(commits[0].lease_left_ms == 600);
  // A value written afresh carries no hint.
  c.out.clear();
  CasResult fresh = c.run([](const std::optional<RegValue>&) { return val("theirs", "n2", 2, 0); }, 3000);
  REQUIRE(fresh.outcome == CasOutcome::committed);
  commits = sent<QCommit>(c.out);
  REQUIRE(commits.size() == 1);
  CHECK(commits[0].lease_left_ms == -1);
}

// A dead holder's last renewal reached one acceptor; a read writes it back
// to the others. A takeover must still wait for the lease that acceptor
// held, and no longer (a whole lease from the read, as before, held the
// failover off for up to one more lease).
TEST_CASE("quorum proposer: a takeover after a read's write-back waits for the found lease only") {
  for (bool plant : {false, true}) {
    CAPTURE(plant);
    Cluster c;
    c.acceptors["n1"].plant_write_back_no_lease(plant);
    c.acceptors["n2"].plant_write_back_no_lease(plant);
    c.seed({"n3"}, {0, 2}, val("h", "n9", 4, 1000), 0);  // n9's renewal at n3 only, at 0 ms
    c.proposer.cas("k", [](const std::optional<RegValue>& cur) { return cur; }, at(300), c.out);
    c.prepare(sent<QPrepare>(c.out).at(0), {"n3", "n2"}, 300);  // n3's promise shows the value
    auto accepts = sent<QAccept>(c.out);
    REQUIRE(accepts.size() == 1);
    c.accept(accepts[0], {"n1", "n2", "n3"}, 300);
    REQUIRE(c.out.results.size() == 1);
    REQUIRE(c.out.results[0].outcome == CasOutcome::committed);  // now held by all three
    REQUIRE(c.out.results[0].value == val("h", "n9", 4, 1000));
    auto take = [](const std::optional<RegValue>&) { return val("x", "n1", 5, 1000); };
    if (plant) {  // the written-back copies hold nothing: taken over at once (the check above can fail)
      CHECK(c.run(take, 900).outcome == CasOutcome::committed);
      continue;
    }
    CHECK(c.run(take, 900).outcome == CasOutcome::lease_held);
    CHECK(c.run(take, 1075).outcome == CasOutcome::committed);  // 300 + 700 + 70 + 1 ms
  }
}

// From the review: a read whose write-back was outbid finds it at the
// highest ballot next round and writes it again; without the hint then,
// acceptors that lacked the value held it a whole lease anew.
TEST_CASE("quorum proposer: a read that finds its own write-back writes it again with a hint") {
  Cluster c;
  c.seed({"n3"}, {0, 2}, val("h", "n9", 4, 1000), 0);
  c.proposer.cas("k", [](const std::optional<RegValue>& cur) { return cur; }, at(300), c.out);
  c.prepare(sent<QPrepare>(c.out).at(0), {"n3", "n2"}, 300);
  auto first = sent<QAccept>(c.out);
  REQUIRE(first.size() == 1);
  CHECK(first[0].found_lease_left_ms == 700);
  c.out.clear();
  c.accept(first[0], {"n2"}, 300);  // only n2 takes it; a rival outbids it at n1 and n3
  for (const char* id : {"n1", "n3"}) REQUIRE(c.acceptors[id].on_prepare(QPrepare{"k", {100, 1}, 9, {}, c.tag()}, at(301)).ok);
  c.accept(first[0], {"n1", "n3"}, 301);
  for (int i = 0; i < 100 && sent<QPrepare>(c.out).empty(); ++i) c.proposer.tick(at(302 + 5 * i), c.out);
  auto again = sent<QPrepare>(c.out);
  REQUIRE(!again.empty());
  c.out.clear();
  c.prepare(again.back(), {"n2", "n1"}, 400);  // n2 shows our own write-back at the highest ballot
  auto second = sent<QAccept>(c.out);
  REQUIRE(second.size() == 1);
  CHECK(second[0].value == val("h", "n9", 4, 1000));
  CHECK(second[0].found_lease_left_ms == 671);  // n2's: 771 ms from 300
}

TEST_CASE("quorum acceptor: a value written back by a reader gets the lease its promisers still held") {
  RegValue v = val("a1", "a", 1, 1000);
  auto written_back = [&](std::int64_t found) {
    QAccept m = accept_msg("k", {3, 1}, {4, 1}, v);
    m.found_lease_left_ms = found;
    return m;
  };
  auto takeover_at = [](QuorumAcceptor& a, int ms) {
    return a.on_accept(accept_msg("k", {9, 2}, {10, 2}, val("b1", "b", 2, 1000)), at(ms)).verdict;
  };
  SUBCASE("300 ms found: held 331 ms from the write-back") {
    QuorumAcceptor a;
    REQUIRE(a.on_accept(written_back(300), at(1000)).verdict == AcceptVerdict::ok);
    CHECK(takeover_at(a, 1330) == AcceptVerdict::lease_held);
    CHECK(takeover_at(a, 1331) == AcceptVerdict::ok);
  }
  SUBCASE("no hint (not a write-back): the whole lease, as before") {
    QuorumAcceptor a;
    REQUIRE(a.on_accept(written_back(-1), at(1000)).verdict == AcceptVerdict::ok);
    CHECK(takeover_at(a, 1999) == AcceptVerdict::lease_held);
  }
  SUBCASE("the holder's own write: the whole lease, whatever the hint") {
    QuorumAcceptor a;
    QAccept m = written_back(300);
    m.from_holder = true;
    REQUIRE(a.on_accept(m, at(1000)).verdict == AcceptVerdict::ok);
    CHECK(takeover_at(a, 1999) == AcceptVerdict::lease_held);
  }
  // Found by review: the acceptor may be one of the majority its holder
  // counts a lease on (here from a write of the same holder at 605 ms);
  // a read's write-back of another value of that holder must not cut it.
  SUBCASE("a running lease of the same holder is never shortened") {
    QuorumAcceptor a;
    REQUIRE(a.on_accept(accept_msg("k", {1, 1}, {2, 1}, val("a0", "a", 1, 1000)), at(605)).verdict ==
            AcceptVerdict::ok);
    REQUIRE(a.on_accept(written_back(300), at(700)).verdict == AcceptVerdict::ok);
    CHECK(takeover_at(a, 1604) == AcceptVerdict::lease_held);
    CHECK(takeover_at(a, 1605) == AcceptVerdict::ok);
  }
  SUBCASE("planted: a write-back starts no lease") {
    QuorumAcceptor a;
    a.plant_write_back_no_lease(true);
    REQUIRE(a.on_accept(written_back(300), at(1000)).verdict == AcceptVerdict::ok);
    CHECK(takeover_at(a, 1002) == AcceptVerdict::ok);
  }
}

TEST_CASE("quorum proposer: a reply at or after the deadline never counts, even before the next tick") {
  auto run = [](bool planted) {
    QuorumProposerConfig config;
    config.plant_count_late_replies = planted;
    Cluster c(config);
    c.proposer.cas("k", increment, at(0), c.out);
    auto prepares = sent<QPrepare>(c.out);
    c.out.clear();
    c.prepare(prepares[0], {"n1", "n2"}, 10);
    auto accepts = sent<QAccept>(c.out);
    REQUIRE(accepts.size() == 1);
    c.out.clear();
    c.accept(accepts[0], {"n1"}, 20);
    c.accept(accepts[0], {"n2"}, 500);  // the deadline: timeout 500 ms after the start
    return c;
  };
  auto c = run(false);
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::no_quorum);
  CHECK(c.out.results[0].reason.find("late reply is not counted") != std::string::npos);
  CHECK(sent<QCommit>(c.out).empty());
  // The planted bug (replies counted until the next tick) commits.
  auto planted = run(true);
  REQUIRE(planted.out.results.size() == 1);
  CHECK(planted.out.results[0].outcome == CasOutcome::committed);
}

TEST_CASE("quorum math: tally and the recovery threshold agree with a naive count over every split") {
  for (std::size_t n = 1; n <= 9; ++n) {
    // Every set of yes voters and of no voters, as bit masks of n voters.
    for (std::uint32_t yes = 0; yes < (1u << n); ++yes) {
      for (std::uint32_t no = 0; no < (1u << n); ++no) {
        if (yes & no) continue;
        std::size_t y = static_cast<std::size_t>(__builtin_popcount(yes));
        std::size_t x = static_cast<std::size_t>(__builtin_popcount(no));
        // Naive: won if yes is more than half; lost if even all silent ones
        // joining yes cannot make it more than half.
        bool won = 2 * y > n;
        bool lost = 2 * (n - x) <= n;
        auto t = quorum::tally(n, y, x);
        CHECK(t == (won ? quorum::Tally::won : lost ? quorum::Tally::lost : quorum::Tally::pending));
      }
    }
    // Any majority minus one member meets any recovery_threshold(n) other members.
    std::size_t q = quorum::majority(n);
    CHECK(2 * q > n);
    CHECK(2 * (q - 1) <= n);
    if (n > 1) CHECK((q - 1) + quorum::recovery_threshold(n) > n - 1);
    CHECK(quorum::recovery_threshold(n) <= n - 1 + (n == 1 ? 1 : 0));
  }
}

TEST_CASE("quorum proposer: a deadline with only lease refusals and silence is the lease's edge, not no_quorum") {
  // n2 holds another holder's lease a little longer (it restarted its lease
  // clock), n3 is silent: the caller must retry once the lease runs out
  // rather than take it for a minority.
  Cluster c;
  c.seed({"n2"}, {0, 2}, val("old", "n3", 1, 1000), 0);
  c.proposer.cas("k", [](const std::optional<RegValue>&) { return val("new", "n1", 2, 1000); }, at(10), c.out);
  auto prepares = sent<QPrepare>(c.out);
  c.out.clear();
  c.prepare(prepares[0], {"n1", "n2"}, 11);
  auto accepts = sent<QAccept>(c.out);
  REQUIRE(accepts.size() == 1);
  c.out.clear();
  c.accept(accepts[0], {"n1", "n2"}, 12);
  CHECK(c.out.results.empty());  // one accepted, one lease-held, one silent: still open
  c.proposer.tick(at(510), c.out);
  REQUIRE(c.out.results.size() == 1);
  CHECK(c.out.results[0].outcome == CasOutcome::lease_held);
  CHECK(c.out.results[0].reason.find("a lease is held") != std::string::npos);
}
