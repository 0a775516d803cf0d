// QuorumProposer: the active half of the quorum register (CASPaxos).
//
// Called by the node's shell on its one thread: cas() from the agent or the
// admin protocol, on_promise/on_accepted with the acceptors' answers, tick()
// every few milliseconds. Everything it wants done comes back in QOut.
//
// Per key, operations run one at a time in cas() order. One operation:
//   fast path  (we committed the key last and were promised `next`): send
//              QAccept(next) with change(remembered value) at once;
//   full path  QPrepare(ballot) -> majority of promises -> change(value with
//              the highest accepted ballot) -> QAccept -> majority accepted.
// A committed value is pushed with QCommit and remembered for the fast path.
#include <algorithm>
#include <deque>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "grid/quorum.h"

namespace rg::grid {

namespace {

std::string str(const Ballot& b) { return fmt::format("{}.{}", b.counter, b.node); }

}  // namespace

struct QuorumProposer::Impl {
  enum class Phase { queued, preparing, accepting, backoff };

  struct Op {
    std::uint64_t id = 0;
    std::string key;
    Change change;
    Time started{}, deadline{};
    Phase phase = Phase::queued;
    int rounds = 0;  // full-path rounds begun
    bool fast = false;
    Ballot ballot, next;
    std::optional<RegValue> current;  // what the change function was given
    RegValue proposal;
    // Ballots at which this operation asked for acceptance: finding one of
    // them as the highest accepted value means our own earlier attempt, which
    // must be completed rather than changed a second time.
    std::set<Ballot> proposed;
    std::map<NodeId, QPromise> promises;  // ok answers to the current prepare
    std::set<NodeId> refused;
    std::set<NodeId> accepted, outbid;
    std::map<NodeId, QAccepted> leased;
    CasMode mode = CasMode::plain;              // takeover: prepares carry takeover_by (QPrepare)
    std::int64_t found_lease_left_ms = -1;      // a write-back's hint (QAccept)
    std::map<NodeId, QPromise> leased_promises;  // prepares refused for another node's lease
    std::map<NodeId, Time> lease_ends;           // ... and when, by our clock, that lease runs out
    Ballot highest_refusal;
    Time resend_at{}, retry_at{};
    std::string last_failure;
    // The configuration it runs under, from its first round on: its tag,
    // the members it asks, its majority (DESIGN.md, "Changing the members":
    // counting a renewal's answers from an old list against a new, smaller
    // majority would count a lease the others never gave).
    std::shared_ptr<const Topology> config;
    // A member change: its accepts also need a majority of this one.
    std::shared_ptr<const Topology> joint;
  };

  // What the last commit on a key left us: the ballot its majority promised.
  struct Remembered {
    Ballot next;
    RegValue value;
  };

  std::shared_ptr<const Topology> topology;  // the committed configuration
  NodeId self;
  MemberIndex self_index = 0;
  QuorumProposerConfig config;
  std::mt19937_64 rng;
  // Answers can be lost, so a phase still short of a majority asks the
  // members that have not answered again, well before the operation's timeout.
  Duration resend_interval;
  std::uint64_t next_op = 1;
  std::map<std::string, std::deque<Op>> ops;  // front: the one in flight
  std::map<std::string, std::uint64_t> seen;  // highest ballot counter seen or used
  std::map<std::string, Remembered> remembered;

  Impl(Topology t, NodeId s, QuorumProposerConfig c)
      : topology(std::make_shared<const Topology>(std::move(t))), self(std::move(s)), config(c), rng(c.seed) {
    auto index = topology->index_of(self);
    if (!index) throw std::invalid_argument(fmt::format("proposer {} is not a member", self));
    self_index = *index;
    resend_interval = std::max(config.timeout / 5, config.retry_backoff);
  }

  // A member change's members that its current configuration lacks: its
  // accepts and its commit go to them too.
  static std::vector<NodeId> added(const Op& op) {
    std::vector<NodeId> ids;
    if (op.joint)
      for (const auto& id : op.joint->members())
        if (!op.config->contains(id)) ids.push_back(id);
    return ids;
  }

  // To every member of the operation's configuration: "" (the shell's list)
  // while that is the current one, each by name for an operation that
  // began before the node adopted a newer one.
  template <class M>
  void to_members(const Op& op, const M& m, QOut& out) const {
    if (op.config == topology) return out.sends.push_back({"", m});
    for (const auto& id : op.config->members()) out.sends.push_back({id, m});
  }

  // Whose answers count for `op`.
  static bool asks(const Op& op, const NodeId& id) {
    return op.config->contains(id) || (op.joint && op.joint->contains(id));
  }

  // The accept phase's vote: of every configuration the operation needs.
  static quorum::Tally accept_tally(const Op& op) {
    auto of = [&](const Topology& t) {
      std::size_t yes = 0, no = 0;
      for (const auto& id : t.members()) {
        yes += op.accepted.contains(id);
        no += op.outbid.contains(id) || op.leased.contains(id);
      }
      return quorum::tally(t.size(), yes, no);
    };
    quorum::Tally v = of(*op.config);
    if (!op.joint || v == quorum::Tally::lost) return v;
    quorum::Tally w = of(*op.joint);
    if (w == quorum::Tally::lost) return w;
    return v == quorum::Tally::won && w == quorum::Tally::won ? quorum::Tally::won : quorum::Tally::pending;
  }

  void see(const std::string& key, const Ballot& b) {
    auto& c = counter(key);
    c = std::max(c, b.counter);
  }
  std::uint64_t& counter(const std::string& key) {
    return seen.try_emplace(key, config.ballot_floor).first->second;
  }

  Op* active(const std::string& key, std::uint64_t op) {
    auto it = ops.find(key);
    if (it == ops.end() || it->second.empty() || it->second.front().id != op) return nullptr;
    return &it->second.front();
  }

  // Uniform in [base/2, 3*base/2]: written out rather than a std
  // distribution so that a seed gives the same delays with any library.
  Duration jittered(Duration base) {
    auto ticks = static_cast<std::uint64_t>(std::max<Duration::rep>(base.count(), 1));
    return Duration(static_cast<Duration::rep>(ticks / 2 + rng() % (ticks + 1)));
  }

  void begin(Op& op, Time now, QOut& out) {
    op.config = topology;
    if (!topology->contains(self))
      return finish(op.key, CasOutcome::no_quorum, std::nullopt,
                    fmt::format("not a member of configuration {}", topology->version()), now, out);
    auto r = remembered.find(op.key);
    // A member change asks members that never promised our `next`.
    if (r == remembered.end() || op.joint) return full_round(op, now, out);
    // Used once either way: a failure of the fast path means somebody else
    // moved on, and a success remembers afresh.
    Remembered last = std::move(r->second);
    remembered.erase(r);
    auto v = op.change(last.value);
    // A refusal of the remembered value is not trusted: it may be stale, and
    // precondition_failed must report what a majority holds now.
    if (!v) return full_round(op, now, out);
    op.fast = true;
    op.ballot = last.next;
    op.current = std::move(last.value);
    send_accept(op, std::move(*v), now, out);
  }

  void full_round(Op& op, Time now, QOut& out) {
    op.fast = false;
    ++op.rounds;
    op.ballot = Ballot{++counter(op.key), self_index};
    op.phase = Phase::preparing;
    op.promises.clear();
    op.refused.clear();
    op.leased_promises.clear();
    op.lease_ends.clear();
    op.highest_refusal = {};
    op.resend_at = now + resend_interval;
    to_members(op, prepare_of(op), out);
  }

  QPrepare prepare_of(const Op& op) const {
    return QPrepare{op.key, op.ballot, op.id, op.mode == CasMode::takeover ? self : NodeId{}, tag_of(*op.config)};
  }

  void send_accept(Op& op, RegValue value, Time now, QOut& out, std::int64_t found_lease_left_ms = -1) {
    op.found_lease_left_ms = found_lease_left_ms;
    op.next = Ballot{op.ballot.counter + 1, self_index};
    // `next` is reserved for our fast path: never reuse it for a prepare.
    see(op.key, op.next);
    op.proposed.insert(op.ballot);
    op.proposal = std::move(value);
    op.phase = Phase::accepting;
    op.accepted.clear();
    op.outbid.clear();
    op.leased.clear();
    op.highest_refusal = {};
    op.resend_at = now + resend_interval;
    to_members(op, accept_of(op), out);
    for (const auto& id : added(op)) out.sends.push_back({id, accept_of(op)});
  }

  QAccept accept_of(const Op& op) const {
    bool from_holder = op.mode == CasMode::holds_lease && op.proposal.lease.holder == self;
    return QAccept{op.key, op.ballot, op.next, op.id, op.proposal, from_holder, op.found_lease_left_ms,
                   tag_of(*op.config)};
  }

  void resend(Op& op, Time now, QOut& out) {
    op.resend_at = now + resend_interval;
    reask_after_leases(op, now);
    for (const auto& id : op.config->members()) resend_to(op, id, out);
    if (op.phase == Phase::accepting)
      for (const auto& id : added(op)) resend_to(op, id, out);
  }

  // A prepare refused for a lease that has run out since is asked again:
  // the acceptor now answers for itself. Without it the round waited out
  // its whole deadline for the members that never answered, a dead
  // master among them, where a majority needs every live one (four
  // members, one dead: 600 ms more per failover).
  void reask_after_leases(Op& op, Time now) const {
    if (op.phase != Phase::preparing || config.plant_no_lease_reask) return;
    for (auto it = op.lease_ends.begin(); it != op.lease_ends.end();) {
      if (now < it->second) {
        ++it;
        continue;
      }
      op.refused.erase(it->first);
      op.leased_promises.erase(it->first);
      it = op.lease_ends.erase(it);
    }
  }

  void resend_to(const Op& op, const NodeId& id, QOut& out) const {
    if (op.phase == Phase::preparing) {
      if (!op.promises.contains(id) && !op.refused.contains(id)) out.sends.push_back({id, prepare_of(op)});
    } else if (!op.accepted.contains(id) && !op.outbid.contains(id) && !op.leased.contains(id)) {
      out.sends.push_back({id, accept_of(op)});
    }
  }

  // An acceptor has seen a newer configuration than the operation's: no
  // majority of ours may complete it any more. The shell learns it and asks
  // for the newer one; the caller retries as after any no_quorum.
  // `op` null: an answer to a round no longer under way.
  void stale_config(Op* op, const NodeId& from, const ConfigTag& seen, Time now, QOut& out) {
    out.stale.push_back(QOut::StaleConfig{from, seen});
    if (!op) return;
    const std::size_t mine = out.results.size();  // finish() may end more operations after it
    finish(op->key, CasOutcome::no_quorum, std::nullopt,
           fmt::format("stale configuration: {} has seen version {}, this operation ran under {}", from,
                       seen.version, op->config->version()),
           now, out);
    out.results[mine].stale_config = true;
  }

  std::uint64_t enqueue(Op op, Time now, QOut& out) {
    std::uint64_t id = op.id;
    auto& queue = ops[op.key];
    queue.push_back(std::move(op));
    if (queue.size() == 1) begin(queue.front(), now, out);
    return id;
  }

  void adopt(Topology newer) {
    if (newer.version() <= topology->version()) return;
    topology = std::make_shared<const Topology>(std::move(newer));
    remembered.clear();
    // Ballots stay unique either way (indices are never given twice); a
    // member re-added under a new index uses it from now on.
    if (auto index = topology->index_of(self)) self_index = *index;
  }

  // A racing write (CasMode::race) outbid by a rival's ballot somewhere,
  // still short of a majority at the resend: retry higher rather than wait.
  bool outbid_racer(const Op& op) const {
    if (op.mode != CasMode::race || config.plant_racer_waits) return false;
    if (op.phase == Phase::accepting) return !op.outbid.empty();
    return op.refused.size() > op.leased_promises.size();
  }

  // The answer holding the value with the highest ballot (null: none holds one).
  static const QPromise* highest(const QPromise* best, const std::map<NodeId, QPromise>& answers) {
    for (const auto& [id, p] : answers)
      if (p.has_value && (!best || best->accepted < p.accepted)) best = &p;
    return best;
  }

  static std::optional<RegValue> value_of(const QPromise* best) {
    return best ? std::optional<RegValue>(best->value) : std::nullopt;
  }

  // The longest lease still running for the value of ballot `b` at the
  // acceptors that answered.
  static std::int64_t lease_left_of(const Ballot& b, const std::map<NodeId, QPromise>& answers, std::int64_t longest) {
    for (const auto& [id, p] : answers)
      if (p.has_value && p.accepted == b) longest = std::max(longest, p.lease_left_ms);
    return longest;
  }

  // Writing back exactly the value found, for its holder's lease: the
  // longest lease the promisers holding it still ran (QAccept), so that
  // the acceptors that did not hold it count no longer. A write its holder
  // counts a lease from sends none: every acceptor restarts its clock.
  static std::int64_t write_back_hint(const Op& op, const QPromise& best) {
    return op.mode == CasMode::holds_lease ? -1 : lease_left_of(best.accepted, op.promises, 0);
  }

  void refused_by_change(Op& op, const QPromise* best, Time now, QOut& out) {
    std::string why = best ? fmt::format("the change refused the value of ballot {}", str(best->accepted))
                           : std::string("the change refused the empty register");
    std::optional<std::int64_t> left;
    if (best) left = lease_left_of(best->accepted, op.leased_promises, lease_left_of(best->accepted, op.promises, 0));
    finish(op.key, CasOutcome::precondition_failed, value_of(best), why, now, out, left);
  }

  void promised_by_majority(Op& op, Time now, QOut& out) {
    const QPromise* best = highest(nullptr, op.promises);
    // Our own earlier attempt is the latest value: it may already count, so
    // finish it instead of applying the change twice (a +1 would become +2).
    // A write-back written again keeps its hint (else acceptors that lacked
    // the value would hold it a whole lease anew).
    if (best && op.proposed.contains(best->accepted))
      return send_accept(op, best->value, now, out, op.found_lease_left_ms >= 0 ? write_back_hint(op, *best) : -1);
    op.current = value_of(best);
    auto v = op.change(op.current);
    if (!v) return refused_by_change(op, best, now, out);
    send_accept(op, std::move(*v), now, out, best && *v == best->value ? write_back_hint(op, *best) : -1);
  }

  void committed(Op& op, Time now, QOut& out) {
    QCommit commit{op.key, op.ballot, op.proposal, op.found_lease_left_ms};
    to_members(op, commit, out);
    for (const auto& id : added(op)) out.sends.push_back({id, commit});  // it learns the configuration naming it
    // Only under the current configuration: the promise of `next` came from
    // the members the operation asked.
    if (op.config == topology) remembered[op.key] = Remembered{op.next, op.proposal};
    std::string why = fmt::format("committed at ballot {}{}", str(op.ballot), op.fast ? " (fast path)" : "");
    finish(op.key, CasOutcome::committed, op.proposal, why, now, out);
  }

  // A majority is out of reach for this ballot. The fast path falls back to
  // the full one at once; a full round backs off and retries, or gives up.
  void lost_round(Op& op, const std::string& why, Time now, QOut& out) {
    op.last_failure = why;
    if (op.fast) return full_round(op, now, out);
    if (op.rounds >= config.max_rounds)
      return finish(op.key, CasOutcome::no_quorum, std::nullopt,
                    fmt::format("gave up after {} rounds: {}", op.rounds, why), now, out);
    op.phase = Phase::backoff;
    op.retry_at = now + jittered(config.retry_backoff * (1LL << std::min(op.rounds - 1, 20)));
  }

  // Names the longest lease reported: no retry can succeed before it ends.
  template <class Answers>
  void lease_refused(Op& op, const Answers& leased, const char* phase, Time now, QOut& out) {
    const typename Answers::mapped_type* longest = nullptr;
    for (const auto& [id, a] : leased)
      if (!longest || longest->lease_left_ms < a.lease_left_ms) longest = &a;
    std::string why = fmt::format("lease held by {} for {} ms more ({} of {} members refused the {})",
                                  longest->holder.empty() ? "(nobody)" : longest->holder,
                                  longest->lease_left_ms, leased.size(), op.config->size(), phase);
    finish_lease_held(op, why, longest->lease_left_ms, now, out);
  }

  // A takeover's prepare lost to leases alone. If a majority answered
  // (promises and lease refusals carry what each acceptor holds), the
  // highest value among them is what a promised majority would have shown:
  // a change that refuses it fails the precondition now, as it would after
  // promises (a claim of a role taken meanwhile stops at once instead of
  // waiting out the lease). Otherwise, or if the change would write: the lease.
  void lease_refused_prepare(Op& op, Time now, QOut& out) {
    if (op.promises.size() + op.leased_promises.size() >= op.config->quorum()) {
      const QPromise* best = highest(highest(nullptr, op.promises), op.leased_promises);
      if ((!best || !op.proposed.contains(best->accepted)) && !op.change(value_of(best)))
        return refused_by_change(op, best, now, out);
    }
    lease_refused(op, op.leased_promises, "prepare", now, out);
  }

  // Ends the operation at the front of `key`'s queue and starts the next one.
  // `key` is a copy: the operation holding the caller's string is destroyed here.
  void finish(std::string key, CasOutcome outcome, std::optional<RegValue> value, std::string reason, Time now,
              QOut& out, std::optional<std::int64_t> lease_left = std::nullopt) {
    auto& queue = ops.at(key);
    const Op& op = queue.front();
    out.results.push_back(CasResult{op.id, outcome, std::move(value), std::move(reason), op.started, lease_left});
    queue.pop_front();
    while (!queue.empty() && now >= queue.front().deadline) {
      const Op& late = queue.front();
      out.results.push_back(CasResult{late.id, CasOutcome::no_quorum, std::nullopt,
                                      "timed out waiting behind earlier operations on the key",
                                      late.started, std::nullopt});
      queue.pop_front();
    }
    if (queue.empty())
      ops.erase(key);
    else
      begin(queue.front(), now, out);
  }

  // A reply that arrives at or after the deadline never counts, even before
  // the next tick would have ended the operation. A restarted acceptor that
  // lost its state waits out this deadline before it adopts its peers'
  // state: a vote its earlier life gave is then either counted already,
  // and so visible at the peers it recovers from, or never counted.
  bool past_deadline(Op& op, Time now, QOut& out) {
    if (now < op.deadline || config.plant_count_late_replies) return false;
    timed_out(op, "; a late reply is not counted", now, out);
    return true;
  }

  // The longest lease the refusals reported, as of their arrival: at most
  // that much is left now.
  static std::int64_t longest_lease_left(const Op& op) {
    std::int64_t left = 0;
    for (const auto& [id, a] : op.leased) left = std::max(left, a.lease_left_ms);
    for (const auto& [id, p] : op.leased_promises) left = std::max(left, p.lease_left_ms);
    return left;
  }

  // lease_held, with how long the longest refusing lease has left: no
  // retry can succeed before then (MemberChange waits for it).
  void finish_lease_held(Op& op, std::string why, std::int64_t left, Time now, QOut& out) {
    const std::size_t mine = out.results.size();  // finish() may end more operations after it
    finish(op.key, CasOutcome::lease_held, op.current, std::move(why), now, out);
    out.results[mine].lease_held_left_ms = left;
  }

  // The deadline passed without a majority. If some acceptor refused only
  // for a lease (and none outbid us), the silent ones may be gone and the
  // lease is what stands in the way until it runs out: lease_held, so the
  // caller retries then (a restarted acceptor restarts its lease clocks, so
  // it can hold a lease a little longer than the others).
  void timed_out(Op& op, const char* more, Time now, QOut& out) {
    std::string why = fmt::format("no majority within {} ms ({}){}", to_ms(config.timeout), progress(op), more);
    bool lease_only = op.phase == Phase::accepting ? !op.leased.empty() && op.outbid.empty()
                                                   : !op.leased_promises.empty() &&
                                                         op.refused.size() == op.leased_promises.size();
    if (op.phase != Phase::backoff && lease_only)
      return finish_lease_held(op, why + "; a lease is held", longest_lease_left(op), now, out);
    finish(op.key, CasOutcome::no_quorum, std::nullopt, why, now, out);
  }

  std::string progress(const Op& op) const {
    switch (op.phase) {
      case Phase::preparing:
        return fmt::format("prepare {}: {} promised, {} refused of {}", str(op.ballot),
                           op.promises.size(), op.refused.size(), op.config->size());
      case Phase::accepting:
        return fmt::format("accept {}: {} accepted, {} outbid, {} lease-held of {}", str(op.ballot),
                           op.accepted.size(), op.outbid.size(), op.leased.size(),
                           op.config->size() + (op.joint ? op.joint->size() : 0));
      case Phase::backoff: return "backing off: " + op.last_failure;
      case Phase::queued: return "queued";
    }
    return "?";
  }
};

QuorumProposer::QuorumProposer(Topology topology, NodeId self, QuorumProposerConfig config)
    : impl_(std::make_shared<Impl>(std::move(topology), std::move(self), config)) {}

std::uint64_t QuorumProposer::cas(const std::string& key, Change change, Time now, QOut& out, CasMode mode) {
  Impl::Op op;
  op.id = impl_->next_op++;
  op.key = key;
  op.mode = mode;
  op.change = std::move(change);
  op.started = now;
  op.deadline = now + impl_->config.timeout;
  return impl_->enqueue(std::move(op), now, out);
}

void QuorumProposer::on_promise(const NodeId& from, const QPromise& m, Time now, QOut& out) {
  Impl& d = *impl_;
  Impl::Op* op = d.active(m.key, m.op);
  bool counts = op && op->config && op->config->contains(from);
  if (!counts && !d.topology->contains(from)) return;
  if (m.stale_config) return d.stale_config(counts && m.ballot == op->ballot ? op : nullptr, from, m.config_seen, now, out);
  if (!m.ok) d.see(m.key, m.promised);
  if (m.has_value) d.see(m.key, m.accepted);
  if (!counts || op->phase != Impl::Phase::preparing || m.ballot != op->ballot) return;
  if (d.past_deadline(*op, now, out)) return;
  if (op->promises.contains(from) || op->refused.contains(from)) return;
  if (m.ok) {
    op->promises.emplace(from, m);
  } else {
    op->refused.insert(from);
    if (m.lease_held) {
      op->leased_promises.emplace(from, m);
      op->lease_ends[from] = now + milliseconds(m.lease_left_ms);
    } else
      op->highest_refusal = std::max(op->highest_refusal, m.promised);
  }
  switch (quorum::tally(op->config->size(), op->promises.size(), op->refused.size())) {
    case quorum::Tally::won: return d.promised_by_majority(*op, now, out);
    case quorum::Tally::lost:
      // A lease alone (enough refusals for it to lose without any outbid)
      // ends the operation: no retry can win before the lease runs out.
      if (quorum::tally(op->config->size(), 0, op->leased_promises.size()) == quorum::Tally::lost)
        return d.lease_refused_prepare(*op, now, out);
      return d.lost_round(*op, fmt::format("prepare {} outbid by {}", str(op->ballot), str(op->highest_refusal)),
                          now, out);
    case quorum::Tally::pending: return;
  }
}

void QuorumProposer::on_accepted(const NodeId& from, const QAccepted& m, Time now, QOut& out) {
  Impl& d = *impl_;
  Impl::Op* op = d.active(m.key, m.op);
  bool counts = op && op->config && d.asks(*op, from);
  if (!counts && !d.topology->contains(from)) return;
  if (m.verdict == AcceptVerdict::stale_config)
    return d.stale_config(counts && m.ballot == op->ballot ? op : nullptr, from, m.config_seen, now, out);
  if (m.verdict == AcceptVerdict::outbid) d.see(m.key, m.promised);
  if (!counts || op->phase != Impl::Phase::accepting || m.ballot != op->ballot) return;
  if (d.past_deadline(*op, now, out)) return;
  if (op->accepted.contains(from) || op->outbid.contains(from) || op->leased.contains(from)) return;
  switch (m.verdict) {
    case AcceptVerdict::ok: op->accepted.insert(from); break;
    case AcceptVerdict::outbid:
      op->outbid.insert(from);
      op->highest_refusal = std::max(op->highest_refusal, m.promised);
      break;
    case AcceptVerdict::lease_held: op->leased.emplace(from, m); break;
    case AcceptVerdict::stale_config: return;  // handled above
  }
  auto vote = d.accept_tally(*op);
  if (vote == quorum::Tally::won) return d.committed(*op, now, out);
  if (vote == quorum::Tally::pending) return;
  // Lost. A lease alone (refusals enough to lose without any outbid) ends a
  // full round; anything else is retried.
  bool lease_alone = quorum::tally(op->config->size(), 0, op->leased.size()) == quorum::Tally::lost;
  if (lease_alone && !op->fast) return d.lease_refused(*op, op->leased, "accept", now, out);
  std::string why = lease_alone
                        ? fmt::format("fast accept {} refused by a lease", str(op->ballot))
                        : fmt::format("accept {} outbid by {}", str(op->ballot), str(op->highest_refusal));
  d.lost_round(*op, why, now, out);
}

void QuorumProposer::tick(Time now, QOut& out) {
  Impl& d = *impl_;
  for (auto it = d.ops.begin(); it != d.ops.end();) {
    // finish() may erase this key's entry; step past it first.
    const std::string key = it->first;
    ++it;
    Impl::Op& op = d.ops.at(key).front();
    if (now >= op.deadline) {
      d.timed_out(op, "", now, out);
    } else if (op.phase == Impl::Phase::backoff && now >= op.retry_at) {
      d.full_round(op, now, out);
    } else if ((op.phase == Impl::Phase::preparing || op.phase == Impl::Phase::accepting) &&
               now >= op.resend_at) {
      if (d.outbid_racer(op)) {
        d.lost_round(op, fmt::format("{}; the rest silent at the resend", d.progress(op)), now, out);
      } else {
        d.resend(op, now, out);
      }
    }
  }
}

std::uint64_t QuorumProposer::change_members(const std::string& key, Change change, Topology next, Time now,
                                             QOut& out) {
  Impl::Op op;
  op.id = impl_->next_op++;
  op.key = key;
  op.change = std::move(change);
  op.started = now;
  op.deadline = now + impl_->config.timeout;
  op.joint = std::make_shared<const Topology>(std::move(next));
  return impl_->enqueue(std::move(op), now, out);
}

void QuorumProposer::adopt(Topology newer, Time, QOut&) { impl_->adopt(std::move(newer)); }

const Topology& QuorumProposer::topology() const { return *impl_->topology; }

std::size_t QuorumProposer::pending() const {
  std::size_t count = 0;
  for (const auto& [key, queue] : impl_->ops) count += queue.size();
  return count;
}

}  // namespace rg::grid
