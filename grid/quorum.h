#pragma once
// Quorum registers: the home of the role table (DESIGN.md "Quorum regions").
//
// Each key is a register changed only by compare-and-set, with a two-phase,
// ballot-based protocol in the style of single-decree Paxos (CASPaxos): the
// proposer gets promises from a majority for a ballot, takes the value with
// the highest accepted ballot, applies its change function (which may
// refuse: precondition failed), and asks a majority to accept the new value.
// A value a majority accepted is committed and pushed (QCommit) to every
// member's QuorumCopy, so reading the role table locally is cheap.
//
// Fast path: an Accept also promises the proposer's next ballot, so a
// proposer repeating writes to the same key (lease renewals) skips the
// prepare phase until somebody else prepares a higher ballot.
//
// Lease rule, at each acceptor: an accepted value may carry a LeaseTag
// (holder, epoch, lease). Until `lease` has run out on the acceptor's own
// clock since it accepted that value, it refuses to accept a value naming a
// different holder or a different epoch. A value with lease 0 holds nothing.
// The clock starts when the acceptor first takes a value, and again on every
// accept of a write the holder counts its lease from (CasMode::holds_lease:
// its renewals and their retries). Another node writing back exactly the
// value held (a read) leaves the clock alone: the holder counts its lease
// from its own operation's start, which came before those accepts, so that
// write cannot matter to the holder; restarting the clock would only keep a
// dead holder's lease alive at the acceptors. A write-back of a value the
// acceptor lacked runs as long as the promisers still held it, never less
// than a lease of the same holder already running there.
//
// All classes are pure protocol cores: (message, now) in, messages and
// results out; no sockets, no clocks, no threads. The node's shell routes
// messages (including those a proposer addresses to its own acceptor).
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <random>
#include <variant>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/codec.h"
#include "common/ids.h"

namespace rg::grid {

struct Ballot {
  std::uint64_t counter = 0;
  MemberIndex node = 0;
  auto operator<=>(const Ballot&) const = default;
  bool operator==(const Ballot&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, counter);
    rg::io(ar, node);
  }
};

struct LeaseTag {
  std::string holder;  // empty: nobody
  std::uint64_t epoch = 0;
  std::int64_t lease_ms = 0;  // 0: holds nothing
  bool operator==(const LeaseTag&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, holder);
    rg::io(ar, epoch);
    rg::io(ar, lease_ms);
  }
};

struct RegValue {
  std::string data;  // opaque to the grid (the agent's encoded role table)
  LeaseTag lease;
  bool operator==(const RegValue&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, data);
    rg::io(ar, lease);
  }
};

// The member configuration a register message was sent under (issue 14):
// the proposer's committed Topology, by version and fingerprint. An
// acceptor refuses a tag below the highest it has seen, or equal to it with
// another fingerprint (QuorumAcceptor::stale), so once a majority of a new
// configuration has seen its tag, no operation of the old one completes.
struct ConfigTag {
  std::uint64_t version = 0;  // 0: none seen yet (an acceptor's start)
  std::uint64_t digest = 0;
  bool operator==(const ConfigTag&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, version);
    rg::io(ar, digest);
  }
};
inline ConfigTag tag_of(const Topology& t) { return ConfigTag{t.version(), t.fingerprint()}; }

// --- messages (type codes in messages.h: q_prepare .. q_commit) ---
struct QPrepare {
  std::string key;
  Ballot ballot;
  std::uint64_t op = 0;  // proposer's operation id, echoed back
  // Set (to the proposer's node) by an operation that takes the role over
  // (a designation or a claim): an acceptor holding another node's live
  // lease refuses it without promising anything (see QuorumAcceptor).
  NodeId takeover_by;
  ConfigTag config;  // the proposer's, for this operation
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, key);
    rg::io(ar, ballot);
    rg::io(ar, op);
    rg::io(ar, takeover_by);
    rg::io(ar, config);
  }
};

struct QPromise {
  std::string key;
  Ballot ballot;  // the ballot this answers
  std::uint64_t op = 0;
  bool ok = false;
  Ballot promised;  // when !ok: the higher ballot already promised
  bool has_value = false;
  Ballot accepted;  // ballot of `value`
  RegValue value;
  bool lease_held = false;  // !ok because a takeover met another node's live lease
  std::string holder;       // lease_held: who holds it
  std::int64_t lease_left_ms = 0;  // of `value`'s lease on our clock (0: none runs)
  // !ok because the prepare's configuration is older than one we have seen
  // (`config_seen`); nothing else in the answer counts.
  bool stale_config = false;
  ConfigTag config_seen;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, key);
    rg::io(ar, ballot);
    rg::io(ar, op);
    rg::io(ar, ok);
    rg::io(ar, stale_config);
    rg::io(ar, config_seen);
    rg::io(ar, promised);
    rg::io(ar, has_value);
    rg::io(ar, accepted);
    rg::io(ar, value);
    rg::io(ar, lease_held);
    rg::io(ar, holder);
    rg::io(ar, lease_left_ms);
  }
};

struct QAccept {
  std::string key;
  Ballot ballot;
  Ballot next;  // also promise this ballot to the same proposer (fast path)
  std::uint64_t op = 0;
  RegValue value;
  // Sent by the node the value's lease names, in a write it counts its
  // lease from (CasMode::holds_lease).
  bool from_holder = false;
  // A write-back of the value the promises showed (a read: a write nobody
  // counts a lease from): the longest lease the promising acceptors still
  // held for it, in ms (0: none ran). -1: not such a write-back.
  std::int64_t found_lease_left_ms = -1;
  ConfigTag config;  // the proposer's, for this operation
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, key);
    rg::io(ar, ballot);
    rg::io(ar, next);
    rg::io(ar, op);
    rg::io(ar, value);
    rg::io(ar, from_holder);
    rg::io(ar, found_lease_left_ms);
    rg::io(ar, config);
  }
};

// stale_config: the accept's configuration is older than one the acceptor
// has seen (QAccepted::config_seen).
enum class AcceptVerdict : std::uint8_t { ok = 0, outbid = 1, lease_held = 2, stale_config = 3 };

struct QAccepted {
  std::string key;
  Ballot ballot;
  std::uint64_t op = 0;
  AcceptVerdict verdict = AcceptVerdict::ok;
  Ballot promised;      // outbid: the higher ballot
  std::string holder;   // lease_held: who holds it
  std::int64_t lease_left_ms = 0;
  ConfigTag config_seen;  // stale_config: the newer one
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, key);
    rg::io(ar, ballot);
    rg::io(ar, op);
    rg::io(ar, verdict);
    rg::io(ar, promised);
    rg::io(ar, holder);
    rg::io(ar, lease_left_ms);
    rg::io(ar, config_seen);
  }
};

struct QCommit {
  std::string key;
  Ballot ballot;
  RegValue value;
  // A read's write-back of a value found at the acceptors: the longest
  // lease the promisers still held for it, in ms, as the proposer sent it in
  // the accept (QAccept::found_lease_left_ms). A reader judging how long ago
  // the value's holder last wrote it starts from this, not from its own
  // first sight. -1: unknown, or a value written afresh.
  std::int64_t lease_left_ms = -1;
  std::optional<std::int64_t> lease_hint() const {
    return lease_left_ms >= 0 ? std::optional<std::int64_t>(lease_left_ms) : std::nullopt;
  }
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, key);
    rg::io(ar, ballot);
    rg::io(ar, value);
    rg::io(ar, lease_left_ms);
  }
};

// Recovery of a restarted acceptor that lost its state (in-memory mode, or
// a lost or corrupt data dir). It must not vote on what it forgot, so it
// answers no prepare or accept until it has adopted, for every key, the
// highest promise and the highest accepted value reported by
// quorum::recovery_threshold(n) other members that are themselves ready.
// Any majority minus this node meets one of them. The rules that make this
// sound (AcceptorRecovery in acceptor_host.h): answers from peers that are
// recovering do not count; nothing is asked before a wait longer than any
// proposer's deadline, so every vote of the earlier life that a proposer
// counted has landed at its peers by then, and none is counted later; only
// answers that echo this life's nonce count. Adopting restarts the lease
// clock (`accepted_at` = now): a lease is only ever lengthened.
struct QSlotState {
  std::string key;
  Ballot promised;
  bool has_value = false;
  Ballot accepted;
  RegValue value;
  bool operator==(const QSlotState&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, key);
    rg::io(ar, promised);
    rg::io(ar, has_value);
    rg::io(ar, accepted);
    rg::io(ar, value);
  }
};

struct QRecoverRequest {
  std::uint64_t nonce = 0;  // this life's; an answer counts only if it echoes it
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, nonce);
  }
};

struct QRecoverState {
  std::uint64_t nonce = 0;  // the request's
  bool recovering = false;  // the sender does not vote yet: its slots are empty and it does not count
  std::vector<QSlotState> slots;
  ConfigTag config_seen;  // the sender acceptor's (QuorumAcceptor::config_seen)
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, nonce);
    rg::io(ar, recovering);
    rg::io(ar, slots);
    rg::io(ar, config_seen);
  }
};

// One acceptor per node, holding every key's promise and accepted value.
class QuorumAcceptor {
 public:
  QPromise on_prepare(const QPrepare& m, Time now);
  QAccepted on_accept(const QAccept& m, Time now);

  std::vector<QSlotState> export_state() const;
  // Takes the higher promise and the higher accepted value of `s`.
  void adopt(const QSlotState& s, Time now);
  // The highest configuration tag any prepare or accept carried; durable
  // like the slots (a change), since the fence of a configuration change
  // rests on it: it only grows, also across restarts.
  const ConfigTag& config_seen() const { return config_seen_; }
  // Takes `t` if it is higher (loading, recovering, the node adopting it).
  void adopt_config_seen(const ConfigTag& t);
  // Forgets every slot (a member removed: see AcceptorHost::adopted).
  void forget_slots();
  // A planted bug for the checks: messages of older configurations are
  // answered as any other (no fence).
  void plant_no_config_fence(bool on) { plant_no_config_fence_ = on; }
  // Grows with every change of a promise or an accepted value: what must be
  // made durable before an answer leaves.
  std::uint64_t changes() const { return changes_; }
  // A planted bug for the checks: the earlier rule, where every accept
  // (reads by other nodes too) restarts the lease clock.
  void plant_every_accept_restarts_lease(bool on) { plant_every_accept_restarts_ = on; }
  // A planted bug for the checks: takeover prepares promised during a live
  // lease, as before the guard (a renewing master could then be outbid
  // until its lease ran out).
  void plant_takeovers_outbid_lease(bool on) { plant_takeovers_outbid_ = on; }
  // A planted bug for the checks: a write-back of a value we did not hold
  // starts no lease at all (the found lease is taken as 0), even over a
  // running lease of the same holder.
  void plant_write_back_no_lease(bool on) { plant_write_back_no_lease_ = on; }

  struct Slot {
    Ballot promised;
    bool has_value = false;
    Ballot accepted;
    RegValue value;
    Time accepted_at{};
  };
  const Slot* find(const std::string& key) const;
  const std::map<std::string, Slot>& slots() const { return slots_; }

 private:
  static std::optional<std::int64_t> lease_left(const Slot& s, Time now);
  bool stale(const ConfigTag& t);
  Time written_back_at(const Slot& s, const QAccept& m, Time now, bool same_holder) const;

  std::map<std::string, Slot> slots_;
  std::uint64_t changes_ = 0;
  bool plant_every_accept_restarts_ = false;
  bool plant_takeovers_outbid_ = false;
  bool plant_write_back_no_lease_ = false;
  bool plant_no_config_fence_ = false;
  ConfigTag config_seen_;
};

// Every member's local copy of committed values (write-through target).
class QuorumCopy {
 public:
  // True if this commit is newer than what we hold for the key.
  bool apply(const QCommit& c);
  const QCommit* find(const std::string& key) const;
  const std::map<std::string, QCommit>& all() const { return values_; }

 private:
  std::map<std::string, QCommit> values_;
};

enum class CasOutcome {
  committed,            // value = the committed value
  precondition_failed,  // the change function refused; value = the current value
  lease_held,           // a majority still honours another holder's lease, or no majority
                        // answered in time and some acceptor refused only for a lease
  no_quorum,            // no majority answered in time (or outbid too often)
};
const char* to_string(CasOutcome o);

// How a compare-and-set stands to the register's lease.
enum class CasMode : std::uint8_t {
  plain,        // a read, or any write nobody counts a lease from
  // The change takes the lease-holding role over (a designation or a
  // claim): acceptors holding a live lease of another node refuse its
  // prepares outright, and it ends lease_held.
  takeover,
  // The lease holder's own write that it counts its lease from (a renewal):
  // every acceptor restarts the lease clock when it accepts it. Only such
  // writes may: a restarted master's first read restarted its earlier
  // process's lease and held every takeover off for one more lease.
  holds_lease,
  // A plain write that several nodes race for at once (the failover
  // reservation). A round outbid somewhere while the rest stay silent is
  // given up at the next resend and retried with a higher ballot, instead
  // of waiting out the deadline for an acceptor that may be gone: with one
  // of five dead, two racers that split the four live ones 2-2 would
  // otherwise both stall for the whole timeout. Only for such writes: the
  // role table's operations keep waiting, as an early retry there made
  // proposers duel on slow networks.
  race,
};

struct CasResult {
  std::uint64_t op = 0;
  CasOutcome outcome = CasOutcome::no_quorum;
  std::optional<RegValue> value;
  std::string reason;   // one line for logs and the operator
  Time started{};       // when cas() was called: a lower bound of every acceptance
  // precondition_failed after promises: the longest lease the answering
  // acceptors still hold for `value`, in ms (0: none runs). A reader's
  // hint; nullopt when not known.
  std::optional<std::int64_t> value_lease_left_ms;
  // no_quorum because an acceptor has seen a newer configuration than the
  // operation's: retry once the node has adopted it (QOut::stale).
  bool stale_config = false;
  // lease_held: the longest lease the refusing acceptors still hold, in ms;
  // no retry can succeed before it ends.
  std::optional<std::int64_t> lease_held_left_ms = std::nullopt;
};

struct QuorumProposerConfig {
  Duration timeout = milliseconds(500);   // whole operation, all retries included
  Duration retry_backoff = milliseconds(5);  // doubled per retry, randomized
  int max_rounds = 6;
  std::uint64_t seed = 1;
  // Ballot counters start above this. A restarted process must never reuse
  // a ballot its earlier life used (with another value): the node passes its
  // incarnation (start time in microseconds), which grows faster than any
  // process can use up ballots.
  std::uint64_t ballot_floor = 0;
  // Tests only: a planted bug the simulations must catch (never set in the
  // product): count replies that arrive after the deadline, until the next tick.
  bool plant_count_late_replies = false;
  // Tests only: a racing write waits for the silent acceptors as any other does.
  bool plant_racer_waits = false;
  // Tests only: a prepare refused for a lease is not asked again once the
  // lease has run out (the round waits out its deadline instead).
  bool plant_no_lease_reask = false;
};

// What a proposer wants sent: `to` empty means every member of the
// proposer's configuration (self included).
struct QOut {
  struct Send {
    NodeId to;
    std::variant<QPrepare, QAccept, QCommit> msg;
  };
  std::vector<Send> sends;
  std::vector<CasResult> results;
  // An acceptor refused an operation for a newer configuration than ours:
  // the shell asks `from` for it (the operation ended no_quorum).
  struct StaleConfig {
    NodeId from;
    ConfigTag seen;
  };
  std::vector<StaleConfig> stale;
  void clear() {
    sends.clear();
    results.clear();
    stale.clear();
  }
};

class QuorumProposer {
 public:
  // nullopt refuses (precondition failed). Gets the current committed-or-
  // accepted value with the highest ballot a majority reported (or nullopt).
  using Change = std::function<std::optional<RegValue>(const std::optional<RegValue>& current)>;

  QuorumProposer(Topology topology, NodeId self, QuorumProposerConfig config = {});

  // Starts a compare-and-set; operations on one key run one at a time in order.
  std::uint64_t cas(const std::string& key, Change change, Time now, QOut& out, CasMode mode = CasMode::plain);
  // A member change (issue 14): a compare-and-set that commits only once a
  // majority of the current configuration *and* a majority of `next` have
  // accepted it (every majority of one then meets every majority of the
  // other). Its accepts go to the members of both.
  std::uint64_t change_members(const std::string& key, Change change, Topology next, Time now, QOut& out);
  // Operations begun from now on run under `newer` (a committed
  // configuration of a higher version; anything else is ignored), and the
  // fast path is forgotten (the promise of `next` came from the old
  // members). Operations under way keep the configuration they began with:
  // until the change's fence they may still complete in it, which every
  // majority of `newer` sees; after it, an acceptor's stale answer ends
  // them (CasResult::stale_config). Restarting them instead could apply a
  // change twice: a catch-up read may have written their first attempt
  // back at another ballot. A node that `newer` leaves out proposes no more.
  void adopt(Topology newer, Time now, QOut& out);
  const Topology& topology() const;
  void on_promise(const NodeId& from, const QPromise& m, Time now, QOut& out);
  void on_accepted(const NodeId& from, const QAccepted& m, Time now, QOut& out);
  // Timeouts and retries; call every few milliseconds.
  void tick(Time now, QOut& out);

  std::size_t pending() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace rg::grid
