// Unit tests for AcceptorHost (durability and recovery of a node's acceptor)
// and DataDir (its file). Time is driven by hand in milliseconds.
#include <doctest/doctest.h>

#include <sodium.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "grid/acceptor_host.h"
#include "grid/data_dir.h"

using namespace rg;
using namespace rg::grid;

namespace {

const Time kStart = Time{} + std::chrono::hours(1);
Time at(int ms) { return kStart + milliseconds(ms); }

// A store that records saves and fails on demand.
class FakeStore : public StateStore {
 public:
  bool save(const DurableState& s, std::string& why) override {
    ++calls;
    if (!fail.empty()) {
      why = fail;
      return false;
    }
    saved = s;
    return true;
  }
  std::string fail;
  int calls = 0;
  std::optional<DurableState> saved;
};

AcceptorHostConfig config(std::size_t n = 3) {
  AcceptorHostConfig c;
  std::vector<NodeId> ids;
  for (std::size_t i = 1; i <= n; ++i) ids.push_back("n" + std::to_string(i));
  c.topology = Topology(ids);
  c.self = "n1";
  c.recovery_wait = milliseconds(1000);
  c.retry_interval = milliseconds(100);
  return c;
}

QAccept accept(Ballot b, std::string data) { return QAccept{"k", b, Ballot{b.counter + 1, b.node}, 1, RegValue{std::move(data), {}}, false, -1, {}}; }

QRecoverState ready_answer(std::uint64_t nonce, Ballot promised, std::optional<std::pair<Ballot, std::string>> value) {
  QRecoverState s{nonce, false, {}, {}};
  QSlotState slot{"k", promised, value.has_value(), value ? value->first : Ballot{}, RegValue{value ? value->second : "", {}}};
  s.slots.push_back(slot);
  return s;
}

bool has_event(AcceptorHost& h, const std::string& prefix) {
  for (const auto& e : h.take_events())
    if (e.starts_with(prefix)) return true;
  return false;
}

}  // namespace

TEST_CASE("acceptor host: state loaded intact votes at once, and every change is saved before it answers") {
  FakeStore store;
  AcceptorHost h(config(), &store, DurableState{{}, {{"agent", "x"}}}, at(0), 7);
  CHECK(h.voting());
  CHECK(has_event(h, "+quorum-ready: acceptor state loaded intact"));
  CHECK(h.note("agent") == "x");
  auto p = h.on_prepare(QPrepare{"k", {5, 1}, 1, {}, {}}, at(1));
  REQUIRE(p);
  CHECK(p->ok);
  REQUIRE(store.saved);
  CHECK(store.saved->slots.at(0).promised == Ballot{5, 1});
  CHECK(store.saved->notes.at("agent") == "x");
  int calls = store.calls;
  // The same prepare again changes nothing: nothing to save.
  CHECK(h.on_prepare(QPrepare{"k", {5, 1}, 1, {}, {}}, at(2)));
  CHECK(store.calls == calls);
  auto a = h.on_accept(accept({5, 1}, "v"), at(3));
  REQUIRE(a);
  CHECK(store.saved->slots.at(0).value.data == "v");
}

TEST_CASE("acceptor host: a failed save undoes the change, stops the votes, and a retry resumes them") {
  FakeStore store;
  AcceptorHost h(config(), &store, DurableState{}, at(0), 7);
  REQUIRE(h.on_accept(accept({1, 1}, "old"), at(1)));
  store.fail = "fdatasync failed: Input/output error";
  CHECK_FALSE(h.on_accept(accept({3, 1}, "new"), at(2)));
  CHECK_FALSE(h.voting());
  CHECK(h.disk_error().find("Input/output") != std::string::npos);
  CHECK(has_event(h, "+disk-fault"));
  // Memory holds what the disk holds: the unsaved accept is gone.
  CHECK(h.acceptor().find("k")->value.data == "old");
  CHECK(h.acceptor().find("k")->promised == Ballot{2, 1});
  CHECK_FALSE(h.on_prepare(QPrepare{"k", {9, 2}, 2, {}, {}}, at(3)));  // no answers at all meanwhile
  h.tick(at(50));
  CHECK_FALSE(h.voting());
  store.fail.clear();
  h.tick(at(200));
  CHECK(h.voting());
  CHECK(has_event(h, "+disk-ok"));
  CHECK(h.on_accept(accept({3, 1}, "new"), at(201))->verdict == AcceptVerdict::ok);
  // A note that cannot be saved stops the votes too.
  store.fail = "No space left on device";
  CHECK_FALSE(h.set_note("agent", "master"));
  CHECK_FALSE(h.voting());
}

TEST_CASE("acceptor host: without state it waits, then recovers only from ready peers answering its nonce") {
  AcceptorHost h(config(5), nullptr, std::nullopt, at(0), 42);
  CHECK_FALSE(h.ready());
  CHECK_FALSE(h.on_prepare(QPrepare{"k", {1, 0}, 1, {}, {}}, at(1)));
  // Rule 1: nothing asked, and nobody's recovery answered, before the wait.
  CHECK(h.requests_due(at(999)).empty());
  CHECK_FALSE(h.on_recover_request("n3", QRecoverRequest{9}, at(999)));
  auto mine = h.on_recover_request("n3", QRecoverRequest{9}, at(1000));
  REQUIRE(mine);
  CHECK(mine->recovering);
  CHECK(mine->nonce == 9);
  CHECK(mine->slots.empty());
  CHECK(h.requests_due(at(1000)) == std::vector<NodeId>{"n2", "n3", "n4", "n5"});
  CHECK(h.requests_due(at(1050)).empty());  // asked again only every retry_interval
  CHECK(h.request().nonce == 42);
  // Rule 3: another life's nonce does not count; rule 2: nor does a recovering peer.
  h.on_recover_state("n2", ready_answer(41, {9, 2}, std::pair{Ballot{8, 2}, "stale"}), at(1001));
  h.on_recover_state("n3", QRecoverState{42, true, {}, {}}, at(1002));
  h.on_recover_state("n4", ready_answer(42, {5, 3}, std::pair{Ballot{4, 3}, "a"}), at(1003));
  h.on_recover_state("n5", ready_answer(42, {7, 4}, std::pair{Ballot{6, 4}, "b"}), at(1004));
  CHECK_FALSE(h.ready());  // 2 of 3 ready answers
  CHECK(h.progress(at(1004)).find("2 of 3") != std::string::npos);
  CHECK(h.requests_due(at(1100)) == std::vector<NodeId>{"n2", "n3"});
  CHECK(h.answers_due().empty());  // nothing to give while recovering
  h.on_recover_state("n2", ready_answer(42, {6, 2}, std::nullopt), at(1101));
  CHECK(h.voting());
  CHECK(has_event(h, "+quorum-ready: acceptor state recovered from n2,n4,n5"));
  const auto* slot = h.acceptor().find("k");
  CHECK(slot->promised == Ballot{7, 4});
  CHECK(slot->value.data == "b");
  CHECK(h.requests_due(at(2000)).empty());
  // n3 asked while we could not answer: it gets our state now, once, with
  // its nonce, without asking again.
  auto owed = h.answers_due();
  REQUIRE(owed.size() == 1);
  CHECK(owed[0].first == "n3");
  CHECK(owed[0].second.nonce == 9);
  CHECK_FALSE(owed[0].second.recovering);
  REQUIRE(owed[0].second.slots.size() == 1);
  CHECK(owed[0].second.slots[0].value.data == "b");
  CHECK(h.answers_due().empty());
  // Once ready, an ask is answered at once and owes nothing later.
  CHECK_FALSE(h.on_recover_request("n4", QRecoverRequest{11}, at(2001))->recovering);
  CHECK(h.answers_due().empty());
}

TEST_CASE("acceptor host: bootstrap only when no member holds an accepted value") {
  SUBCASE("every other member recovering or holding nothing: start empty") {
    AcceptorHost h(config(3), nullptr, std::nullopt, at(0), 1);
    h.on_recover_state("n2", QRecoverState{1, true, {}, {}}, at(1000));
    CHECK_FALSE(h.ready());
    h.on_recover_state("n3", ready_answer(1, {3, 2}, std::nullopt), at(1001));
    CHECK(h.voting());
    CHECK(has_event(h, "+quorum-ready: bootstrap"));
    CHECK(h.acceptor().find("k")->promised == Ballot{3, 2});  // the promises it heard
  }
  SUBCASE("a member holding a value keeps the others waiting for it") {
    AcceptorHost h(config(5), nullptr, std::nullopt, at(0), 1);
    for (const auto* id : {"n2", "n3", "n4"}) h.on_recover_state(id, QRecoverState{1, true, {}, {}}, at(1000));
    h.on_recover_state("n5", ready_answer(1, {3, 4}, std::pair{Ballot{3, 4}, "v"}), at(1001));
    CHECK_FALSE(h.ready());
    CHECK(h.progress(at(1001)).find("holding values [n5]") != std::string::npos);
  }
  SUBCASE("not in a life that heard a node of this cluster on another member list") {
    AcceptorHost h(config(3), nullptr, std::nullopt, at(0), 1);
    h.heard_other_list("n9");
    h.on_recover_state("n2", QRecoverState{1, true, {}, {}}, at(1000));
    h.on_recover_state("n3", QRecoverState{1, true, {}, {}}, at(1001));
    CHECK_FALSE(h.ready());
    CHECK(h.progress(at(1001)).find("no bootstrap in this life: n9") != std::string::npos);
    CHECK(has_event(h, "+bootstrap-held: n9"));
    // Not heard for long (a partition, a loss burst): still held.
    h.on_recover_state("n2", QRecoverState{1, true, {}, {}}, at(60000));
    CHECK_FALSE(h.ready());
    // The next life, that heard nobody on another list, bootstraps.
    AcceptorHost next(config(3), nullptr, std::nullopt, at(70000), 2);
    next.on_recover_state("n2", QRecoverState{2, true, {}, {}}, at(71000));
    next.on_recover_state("n3", QRecoverState{2, true, {}, {}}, at(71001));
    CHECK(next.voting());
  }
  SUBCASE("a lone member is ready at once") {
    AcceptorHost h(config(1), nullptr, std::nullopt, at(0), 1);
    CHECK(h.voting());
  }
}

TEST_CASE("acceptor host: the planted bugs break exactly the rules they name") {
  AcceptorHostConfig c = config(3);
  c.plant.count_recovering_peers = true;
  AcceptorHost h(c, nullptr, std::nullopt, at(0), 1);
  h.on_recover_state("n2", QRecoverState{1, true, {}, {}}, at(1000));
  h.on_recover_state("n3", ready_answer(1, {3, 2}, std::pair{Ballot{3, 2}, "v"}), at(1001));
  CHECK(h.ready());  // counted the recovering n2
  AcceptorHostConfig w = config(3);
  w.plant.skip_recovery_wait = true;
  AcceptorHost nw(w, nullptr, std::nullopt, at(0), 1);
  CHECK(nw.requests_due(at(1)).size() == 2);
}

TEST_CASE("data dir: saves survive, damage is lost state, another node's or version's state is refused") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("rg-datadir-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const Topology kList({"n1", "n2", "n3"});
  DurableState s{{QSlotState{"k", {5, 1}, true, {4, 1}, RegValue{"table", {"n1", 3, 1000}}}}, {{"agent", "{}"}}};
  {
    DataDir d(dir.string(), "n1", "c", kList);
    CHECK(d.load().found == DataDir::Found::nothing);
    std::string why;
    REQUIRE(d.save(s, why));
    // A second process on the same dir is refused while the first holds it.
    CHECK_THROWS_AS(DataDir(dir.string(), "n1", "c", kList), std::runtime_error);
    d.set_fault([] { return std::string("injected"); });
    CHECK_FALSE(d.save(s, why));
    CHECK(why == "injected");
  }
  {
    DataDir d(dir.string(), "n1", "c", kList);
    auto loaded = d.load();
    REQUIRE(loaded.found == DataDir::Found::intact);
    CHECK(loaded.state == s);
  }
  CHECK_THROWS_AS(DataDir(dir.string(), "n2", "c", kList).load(), std::invalid_argument);
  CHECK_THROWS_AS(DataDir(dir.string(), "n1", "other", kList).load(), std::invalid_argument);
  // The member list it was saved under, in any order; no other list.
  CHECK(DataDir(dir.string(), "n1", "c", Topology({"n3", "n1", "n2"})).load().found == DataDir::Found::intact);
  CHECK_THROWS_WITH_AS(DataDir(dir.string(), "n1", "c", Topology({"n1", "n2", "n3", "n4"})).load(),
                       doctest::Contains("differs from the list in --data-dir"), std::invalid_argument);
  CHECK_THROWS_AS(DataDir(dir.string(), "n1", "c", Topology({"n1", "n2"})).load(), std::invalid_argument);
  auto file = dir / "acceptor.state";
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (std::size_t at : {std::size_t{2}, std::size_t{10}, bytes.size() / 2, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[at] = static_cast<char>(bad[at] ^ 0x5a);
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bad;
    auto loaded = DataDir(dir.string(), "n1", "c", kList).load();
    CHECK_MESSAGE(loaded.found == DataDir::Found::corrupt, "byte " << at);
    CHECK(!loaded.problem.empty());
  }
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 3);
  CHECK(DataDir(dir.string(), "n1", "c", kList).load().found == DataDir::Found::corrupt);
  CHECK_THROWS_AS(DataDir((dir / "acceptor.state").string(), "n1", "c", kList), std::invalid_argument);
  fs::remove_all(dir);
}

namespace {
// acceptor.state as the build before the member list wrote it: the same
// layout (data_dir.h), a payload of {node, cluster, state} without the note.
struct OldPayload {
  NodeId node;
  std::string cluster;
  DurableState state;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, node);
    rg::io(ar, cluster);
    rg::io(ar, state);
  }
};

std::string old_state_file(const DurableState& state) {
  std::string payload = encode(OldPayload{"n1", "c", state});
  std::string out("RGAS", 4);
  auto le = [&out](std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  le(DataDir::kFormatVersion, 4);
  le(1, 8);
  le(payload.size(), 4);
  out += payload;
  std::string sum(16, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(sum.data()), sum.size(),
                     reinterpret_cast<const unsigned char*>(out.data()), out.size(), nullptr, 0);
  return out + sum;
}
}  // namespace

TEST_CASE("data dir: a file saved before the member list was kept loads, and keeps the list of its next save") {
  namespace fs = std::filesystem;
  REQUIRE(sodium_init() >= 0);
  fs::path dir = fs::temp_directory_path() / ("rg-datadir-old-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  DurableState s{{QSlotState{"k", {5, 1}, true, {4, 1}, RegValue{"table", {"n1", 3, 1000}}}}, {{"agent", "{}"}}};
  std::ofstream(dir / "acceptor.state", std::ios::binary) << old_state_file(s);
  {
    DataDir d(dir.string(), "n1", "c", Topology({"n1", "n2", "n3"}));
    auto loaded = d.load();
    REQUIRE(loaded.found == DataDir::Found::intact);
    CHECK(loaded.state == s);
    std::string why;
    REQUIRE(d.save(loaded.state, why));
  }
  CHECK_THROWS_AS(DataDir(dir.string(), "n1", "c", Topology({"n1", "n2"})).load(), std::invalid_argument);
  CHECK(DataDir(dir.string(), "n1", "c", Topology({"n1", "n2", "n3"})).load().found == DataDir::Found::intact);
  fs::remove_all(dir);
}

TEST_CASE("acceptor host: the configuration tag seen is saved before the answer, and kept across restarts and recovery") {
  ConfigTag v1{1, 11}, v2{2, 22};
  FakeStore store;
  AcceptorHost h(config(), &store, DurableState{}, at(0), 1);
  REQUIRE(h.on_prepare(QPrepare{"k", {1, 1}, 1, {}, v2}, at(1))->ok);
  REQUIRE(store.saved);
  CHECK(store.saved->notes.at(kConfigSeenNote) == "2:22");
  // A save that fails takes the raised tag back with the promise: no answer.
  ConfigTag v3{3, 33};
  store.fail = "I/O error";
  CHECK_FALSE(h.on_prepare(QPrepare{"k", {2, 1}, 2, {}, v3}, at(2)));
  CHECK(h.acceptor().config_seen() == v2);
  // Restarted from what was saved: an older configuration is still refused.
  AcceptorHost again(config(), nullptr, store.saved, at(3), 2);
  CHECK(again.acceptor().config_seen() == v2);
  CHECK(again.on_prepare(QPrepare{"k", {5, 1}, 3, {}, v1}, at(4))->stale_config);
  CHECK_FALSE(again.note(kConfigSeenNote));  // not one of the layers' notes
  // A recovering acceptor takes the highest tag its peers report (with the
  // record of that configuration: a tag above every record found keeps it
  // waiting, see below).
  AcceptorHost fresh(config(), nullptr, std::nullopt, at(0), 7);
  ConfigRecord v1_record = ConfigRecord::of(Topology({"n1", "n2", "n3"}), true);
  std::string why;
  ConfigRecord v2_record = *changed(v1_record, "n3", false, why);
  v2_record.settled = true;
  auto answer = [&](const NodeId& from) {
    QRecoverState s{7, false, {QSlotState{kMembersKey, {4, 1}, true, {4, 1}, config_to_register(v2_record)}}, v2};
    fresh.on_recover_state(from, s, at(1000));
  };
  answer("n2");
  answer("n3");
  REQUIRE(fresh.ready());
  CHECK(fresh.acceptor().config_seen() == v2);
  CHECK(fresh.on_accept(QAccept{"k", {9, 2}, {10, 2}, 4, RegValue{"x", {}}, false, -1, v1}, at(1001))->verdict ==
        AcceptVerdict::stale_config);
  CHECK(parse_config_tag("nonsense").version == 0);
  CHECK(parse_config_tag("4:x").version == 0);
}

namespace {

// n1..n3 at first; v2 removes n3, v3 adds n4: {n1, n2, n4}.
struct Configs {
  ConfigRecord v1 = ConfigRecord::of(Topology({"n1", "n2", "n3"}), true);
  ConfigRecord v2, v3;
  Configs() {
    std::string why;
    v2 = *changed(v1, "n3", false, why);
    v2.settled = true;
    v3 = *changed(v2, "n4", true, why);
  }
};

QSlotState record_slot(const ConfigRecord& r, Ballot b) { return QSlotState{kMembersKey, b, true, b, config_to_register(r)}; }

QRecoverState answer_with(std::uint64_t nonce, std::vector<QSlotState> slots) {
  return QRecoverState{nonce, false, std::move(slots), {}};
}

}  // namespace

TEST_CASE("acceptor host: without state it counts answers in the configurations its peers' answers show") {
  Configs c;
  AcceptorHostConfig hc = config();  // --members n1,n2,n3: version 1
  QSlotState old_value{"k", {90, 2}, true, {90, 2}, RegValue{"old", {}}};  // n3's, from long ago, ballot high
  QSlotState current{"k", {40, 1}, true, {40, 1}, RegValue{"current", {}}};
  auto run = [&](AcceptorHostConfig::Plants plants, bool v3_settled) {
    hc.plant = plants;
    auto h = std::make_unique<AcceptorHost>(hc, nullptr, std::nullopt, at(0), 7);
    h->heard("n4");
    ConfigRecord v3 = c.v3;
    v3.settled = v3_settled;
    // n3, removed at v2 without hearing of it, still answers from its old state.
    h->on_recover_state("n3", answer_with(7, {old_value}), at(1000));
    h->on_recover_state("n2", answer_with(7, {current, record_slot(v3, {50, 1})}), at(1001));
    return h;
  };
  SUBCASE("a settled record: two of its three members") {
    auto h = run({}, true);
    CHECK_FALSE(h->ready());  // n2 and n3 would do for the --members list; n3 is not in v3
    CHECK(h->progress(at(1001)).find("configuration 3: 1 of 2") != std::string::npos);
    auto due = h->requests_due(at(1001));
    CHECK(std::find(due.begin(), due.end(), "n4") != due.end());
    h->on_recover_state("n4", answer_with(7, {current}), at(1002));
    REQUIRE(h->ready());
    CHECK(h->topology() == c.v3.topology());
    // n3's answer was not adopted: it is in no configuration recovery waited for.
    REQUIRE(h->acceptor().find("k"));
    CHECK(h->acceptor().find("k")->value.data == "current");
  }
  SUBCASE("an unsettled record: its members and the previous configuration's") {
    auto h = run({}, false);
    h->on_recover_state("n4", answer_with(7, {current}), at(1002));
    // v2 is {n1, n2}: n2 answered, which is enough for it too.
    REQUIRE(h->ready());
    CHECK(h->topology() == c.v2.topology());  // the highest known committed
  }
  SUBCASE("planted: counted in the --members list alone") {
    AcceptorHostConfig::Plants p;
    p.recover_one_config = true;
    auto h = run(p, true);
    REQUIRE(h->ready());
    CHECK(h->acceptor().find("k")->value.data == "old");  // the value that must not come back
  }
}

TEST_CASE("acceptor host: a removed member answers no recovery, also after a restart, until it is added again") {
  Configs c;
  FakeStore store;
  AcceptorHostConfig hc = config();
  hc.self = "n3";
  AcceptorHost h(hc, &store, DurableState{}, at(0), 1);
  REQUIRE(h.on_accept(accept({3, 1}, "x"), at(1)));
  REQUIRE(h.on_recover_request("n1", QRecoverRequest{5}, at(1)));
  // v2 removes n3. Not settled yet: its slots may be the last copy of what
  // the three chose, so it keeps them and still answers.
  REQUIRE(h.adopted(c.v2.topology(), false));
  CHECK_FALSE(h.removed());
  CHECK_FALSE(h.acceptor().slots().empty());
  CHECK(h.on_recover_request("n1", QRecoverRequest{5}, at(2)));
  // Settled: it forgets, and answers nobody's recovery.
  REQUIRE(h.adopted(c.v2.topology(), true));
  CHECK(h.removed());
  CHECK(h.acceptor().slots().empty());
  CHECK_FALSE(h.on_recover_request("n1", QRecoverRequest{5}, at(2)));
  REQUIRE(store.saved);
  CHECK(store.saved->notes.contains(kRemovedNote));
  // Restarted with its --members list (version 1): the data dir's
  // configuration is the one it uses.
  AcceptorHost again(hc, &store, store.saved, at(3), 2);
  CHECK(again.topology() == c.v2.topology());
  CHECK_FALSE(again.on_recover_request("n1", QRecoverRequest{6}, at(4)));
  CHECK_FALSE(again.note(kRemovedNote));  // not one of the layers' notes
  CHECK_FALSE(again.note(kConfigNote));
  std::string why;
  ConfigRecord v2 = c.v2;
  v2.settled = true;
  REQUIRE(again.adopted(changed(v2, "n3", true, why)->topology()));  // added again: starts empty, answers
  CHECK(again.on_recover_request("n1", QRecoverRequest{6}, at(5)));
  CHECK(again.acceptor().slots().empty());
}

TEST_CASE("acceptor host: recovery waits for the records of any configuration an answer has seen") {
  // A member removed and added again answers blank with a high tag seen:
  // enough answers of the --members list by count, but that list's values
  // may be gone from it (a review's trace).
  QRecoverState blank_v5{7, false, {}, ConfigTag{5, 55}};
  QRecoverState blank_v1{7, false, {}, ConfigTag{1, 11}};
  AcceptorHost h(config(), nullptr, std::nullopt, at(0), 7);
  h.on_recover_state("n2", blank_v5, at(1000));
  h.on_recover_state("n3", blank_v1, at(1000));
  CHECK_FALSE(h.ready());
  AcceptorHostConfig planted = config();
  planted.plant.recover_one_config = true;
  AcceptorHost p(planted, nullptr, std::nullopt, at(0), 7);
  p.on_recover_state("n2", blank_v5, at(1000));
  p.on_recover_state("n3", blank_v1, at(1000));
  CHECK(p.ready());
}

TEST_CASE("acceptor host: a settled record overrides unsettled copies of its version") {
  Configs c;
  ConfigRecord v3_settled = c.v3;
  v3_settled.settled = true;
  AcceptorHost h(config(), nullptr, std::nullopt, at(0), 7);
  h.heard("n4");
  h.on_recover_state("n3", answer_with(7, {record_slot(c.v3, {50, 1})}), at(1000));  // a laggard's copy
  CHECK(h.progress(at(1000)).find("configuration 2") != std::string::npos);
  h.on_recover_state("n2", answer_with(7, {record_slot(v3_settled, {60, 1})}), at(1000));
  auto line = h.progress(at(1000));
  CHECK(line.find("configuration 3: 1 of 2") != std::string::npos);
  CHECK(line.find("configuration 2") == std::string::npos);
  h.on_recover_state("n4", answer_with(7, {record_slot(v3_settled, {60, 1})}), at(1001));
  CHECK(h.ready());
  CHECK(h.topology() == c.v3.topology());
}

TEST_CASE("acceptor host: a configuration adopted while recovering is saved only with the recovered state") {
  Configs c;
  FakeStore store;
  AcceptorHost h(config(), &store, std::nullopt, at(0), 7);
  REQUIRE(h.adopted(c.v2.topology(), false));
  // Nothing saved: a file now would load as intact and vote unrecovered.
  CHECK(store.calls == 0);
  CHECK(h.topology() == c.v2.topology());
  ConfigRecord v2 = c.v2;
  v2.settled = true;
  h.on_recover_state("n2", answer_with(7, {record_slot(v2, {5, 1})}), at(1000));
  REQUIRE(h.ready());
  REQUIRE(store.saved);
  CHECK(store.saved->notes.contains(kConfigNote));
  CHECK(h.acceptor().config_seen().version == 2);
}

TEST_CASE("acceptor host: a node started to join never bootstraps") {
  for (bool joining : {false, true}) {
    CAPTURE(joining);
    AcceptorHostConfig hc = config();
    hc.joining = joining;
    AcceptorHost h(hc, nullptr, std::nullopt, at(0), 7);
    QRecoverState blank{7, false, {}, {}};
    h.on_recover_state("n2", blank, at(1000));
    h.on_recover_state("n3", QRecoverState{7, true, {}, {}}, at(1000));
    CHECK(h.ready() == !joining);  // no member holds anything: a first start bootstraps, a joiner waits
  }
}
