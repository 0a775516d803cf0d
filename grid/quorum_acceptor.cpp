// The passive half of the quorum register: the acceptor every member runs,
// the local copy of committed values, and the outcome names. The proposer is
// in quorum_proposer.cpp.
#include <algorithm>
#include <chrono>

#include "grid/quorum.h"

namespace rg::grid {

const char* to_string(CasOutcome o) {
  switch (o) {
    case CasOutcome::committed: return "committed";
    case CasOutcome::precondition_failed: return "precondition-failed";
    case CasOutcome::lease_held: return "lease-held";
    case CasOutcome::no_quorum: return "no-quorum";
  }
  return "?";
}

// QuorumAcceptor: called by the node's shell (one thread) with every
// QPrepare/QAccept addressed to this member, its own proposer's included.
// Its answers go back to the sender, once AcceptorHost has made every change
// durable (changes() tells it when). Losing this state would break the
// promises it made: a restart either loads it intact or recovers it.

// The lease the slot's value holds, if it still runs on our clock: the ms
// left (counted from when we accepted it, see on_accept).
std::optional<std::int64_t> QuorumAcceptor::lease_left(const Slot& s, Time now) {
  if (!s.has_value || s.value.lease.lease_ms <= 0) return std::nullopt;
  Time until = s.accepted_at + milliseconds(s.value.lease.lease_ms);
  if (now >= until) return std::nullopt;
  return std::chrono::ceil<milliseconds>(until - now).count();
}

// When the lease clock of a write-back starts: a read writing back a value
// we did not hold, by anyone but its holder. Its lease runs as long as the
// longest among the acceptors that promised it, plus a tenth for clock
// rates (the drift bound is 5%) and a millisecond, and never ends before a
// lease of the same holder and epoch that runs here already.
// Why that is safe: the holder counts its lease only from an operation of
// its own that a majority accepted from it, each of them restarting its
// clock then (from_holder); a takeover needs one of that majority, whose
// lease no write-back shortens. The rest of us need no lease for it.
// Counted in full from now, as before, a dead master's last renewal,
// accepted by a few and written back by a read after it was killed, held
// every takeover off for up to one more lease.
Time QuorumAcceptor::written_back_at(const Slot& s, const QAccept& m, Time now, bool same_holder) const {
  std::int64_t lease = m.value.lease.lease_ms;
  if (lease <= 0) return now;
  std::int64_t found = plant_write_back_no_lease_ ? 0 : m.found_lease_left_ms;
  std::int64_t keep = std::min(lease, found + found / 10 + 1);
  if (auto left = lease_left(s, now); left && same_holder && !plant_write_back_no_lease_)
    keep = std::min(lease, std::max(keep, *left));
  return now - milliseconds(lease - keep);
}

// A message of a configuration older than one seen (or of another at the
// same version) is refused without promising or accepting anything: the
// fence of a member change (DESIGN.md, "Changing the members"). A newer
// tag is taken, as a change to make durable before the answer leaves.
bool QuorumAcceptor::stale(const ConfigTag& t) {
  if (plant_no_config_fence_) return false;
  if (t.version < config_seen_.version) return true;
  if (t.version == config_seen_.version) return t.digest != config_seen_.digest;
  adopt_config_seen(t);
  return false;
}

void QuorumAcceptor::forget_slots() {
  slots_.clear();
  ++changes_;
}

void QuorumAcceptor::adopt_config_seen(const ConfigTag& t) {
  if (t.version <= config_seen_.version) return;
  config_seen_ = t;
  ++changes_;
}

QPromise QuorumAcceptor::on_prepare(const QPrepare& m, Time now) {
  QPromise p;
  p.key = m.key;
  p.ballot = m.ballot;
  p.op = m.op;
  if (stale(m.config)) {
    p.stale_config = true;
    p.config_seen = config_seen_;
    return p;
  }
  Slot& s = slots_[m.key];
  // A takeover would be refused at accept while another node's lease runs,
  // but its promise alone would outbid the holder's next renewal: rivals
  // retrying their designations every heartbeat starved a master that
  // renewed through a bridge node until its lease ran out (chaos
  // bridge.chaos). So refuse it here and promise nothing. Safe: to the
  // protocol, a refused prepare is a lost one.
  auto left = lease_left(s, now);
  if (!m.takeover_by.empty() && !plant_takeovers_outbid_ && left && s.value.lease.holder != m.takeover_by) {
    p.lease_held = true;
    p.holder = s.value.lease.holder;
    p.lease_left_ms = *left;
    p.promised = s.promised;
    // What we hold, so the proposer can still tell a takeover whose
    // precondition no longer holds (promising nothing, this binds nothing).
    p.has_value = true;
    p.accepted = s.accepted;
    p.value = s.value;
    return p;
  }
  // Equal is fine: a ballot names its proposer, so an equal one is that
  // proposer asking again (a resend or a duplicate), not a rival.
  if (m.ballot >= s.promised) {
    if (m.ballot != s.promised) ++changes_;
    s.promised = m.ballot;
    p.ok = true;
    p.has_value = s.has_value;
    p.accepted = s.accepted;
    p.value = s.value;
    // How long that value's holder may still act, as far as we know: a
    // reader uses it to judge a renewal it finds (HaAgent::on_confirmed).
    p.lease_left_ms = left.value_or(0);
  }
  p.promised = s.promised;
  return p;
}

QAccepted QuorumAcceptor::on_accept(const QAccept& m, Time now) {
  QAccepted a;
  a.key = m.key;
  a.ballot = m.ballot;
  a.op = m.op;
  if (stale(m.config)) {
    a.verdict = AcceptVerdict::stale_config;
    a.config_seen = config_seen_;
    return a;
  }
  Slot& s = slots_[m.key];
  // A duplicate of what we hold (the proposer resends to members whose answer
  // it missed) is answered ok again: we did accept it, and saying so changes
  // nothing. It must not restart the lease either, so state stays untouched.
  // Without this, our own `next` promise would make the resend look outbid.
  if (s.has_value && s.accepted == m.ballot && s.value == m.value) {
    a.verdict = AcceptVerdict::ok;
    a.promised = s.promised;
    return a;
  }
  if (m.ballot < s.promised) {
    a.verdict = AcceptVerdict::outbid;
    a.promised = s.promised;
    return a;
  }
  // The lease runs on our clock from when *we* accepted the holder's value:
  // any majority that later accepts another holder contains one of us who
  // waited the whole lease, so the old holder has stopped acting by then.
  const LeaseTag& held = s.value.lease;
  bool same_holder = m.value.lease.holder == held.holder && m.value.lease.epoch == held.epoch;
  if (auto left = lease_left(s, now); left && !same_holder) {
    a.verdict = AcceptVerdict::lease_held;
    a.promised = s.promised;
    a.holder = held.holder;
    a.lease_left_ms = *left;
    return a;
  }
  // The holder's lease-counting accepts (from_holder) always restart the
  // lease clock: two attempts at one renewal carry equal values, and the
  // holder counts its lease from the start of the operation that committed,
  // so every acceptor of that operation must count from its own accept.
  // Anyone else writing back the very value we hold (a read, a completion)
  // leaves the clock alone: the holder cannot count on that write, and
  // restarting the clock would keep a dead holder's lease alive for as long
  // as others keep reading. A new value restarts it, except a write-back
  // (see written_back_at).
  bool same_value = s.has_value && s.value == m.value;
  if (!same_value || m.from_holder || plant_every_accept_restarts_) {
    Time at = now;
    if (!same_value && !m.from_holder && m.found_lease_left_ms >= 0 && !plant_every_accept_restarts_)
      at = written_back_at(s, m, now, same_holder);
    s.accepted_at = at;
  }
  s.has_value = true;
  s.accepted = m.ballot;
  s.value = m.value;
  s.promised = std::max({s.promised, m.ballot, m.next});
  ++changes_;
  a.verdict = AcceptVerdict::ok;
  a.promised = s.promised;
  return a;
}

const QuorumAcceptor::Slot* QuorumAcceptor::find(const std::string& key) const {
  auto it = slots_.find(key);
  return it == slots_.end() ? nullptr : &it->second;
}

// QuorumCopy: fed by the shell with every QCommit this member receives; read
// by the agent and the admin protocol. Commits may arrive late, twice or out
// of order, so only a higher ballot replaces what we hold.

bool QuorumCopy::apply(const QCommit& c) {
  auto it = values_.find(c.key);
  if (it != values_.end() && !(it->second.ballot < c.ballot)) return false;
  values_.insert_or_assign(c.key, c);
  return true;
}

const QCommit* QuorumCopy::find(const std::string& key) const {
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

std::vector<QSlotState> QuorumAcceptor::export_state() const {
  std::vector<QSlotState> out;
  for (const auto& [key, slot] : slots_)
    out.push_back(QSlotState{key, slot.promised, slot.has_value, slot.accepted, slot.value});
  return out;
}

void QuorumAcceptor::adopt(const QSlotState& s, Time now) {
  auto& slot = slots_[s.key];
  ++changes_;
  slot.promised = std::max({slot.promised, s.promised, s.accepted});
  if (s.has_value && (!slot.has_value || s.accepted > slot.accepted)) {
    slot.has_value = true;
    slot.accepted = s.accepted;
    slot.value = s.value;
    slot.accepted_at = now;
  }
}

}  // namespace rg::grid
