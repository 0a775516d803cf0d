#include "grid/sessions.h"

#include <algorithm>

namespace rg::grid {

bool ReplayWindow::accept(std::uint64_t counter) {
  if (counter > top_) {
    auto shift = counter - top_;
    seen_ = shift >= 64 ? 0 : seen_ << shift;
    seen_ |= 1;
    top_ = counter;
    return true;
  }
  auto age = top_ - counter;
  if (age >= 64) return false;  // older than the window: cannot tell, so refuse
  auto bit = std::uint64_t{1} << age;
  if (seen_ & bit) return false;
  seen_ |= bit;
  return true;
}

std::size_t PeerSessions::verified() const {
  std::size_t n = 0;
  for (const auto& [s, e] : sessions_) n += e.verified;
  return n;
}

PeerSessions::Entry& PeerSessions::entry(const SessionId& s, Time now) {
  auto it = sessions_.find(s);
  if (it == sessions_.end()) {
    make_room(now);
    it = sessions_.emplace(s, Entry{}).first;
    it->second.last = now;
  }
  return it->second;
}

// Forgets idle sessions; if still full, the least recently heard one,
// unverified first (a replayer cannot push out a live peer).
void PeerSessions::make_room(Time now) {
  for (auto it = sessions_.begin(); it != sessions_.end();)
    it = now - it->second.last > limits_.idle_expiry ? sessions_.erase(it) : std::next(it);
  while (sessions_.size() >= limits_.max_sessions) {
    auto key = [](const Entry& e) { return std::make_pair(e.verified, e.last); };
    auto victim = sessions_.begin();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it)
      if (key(it->second) < key(victim->second)) victim = it;
    sessions_.erase(victim);
  }
}

PeerSessions::Verdict PeerSessions::check(const SessionId& s, std::uint64_t counter, const Sender& from, Time now) {
  auto& e = entry(s, now);
  // An unverified replay does not keep its entry alive: `last` moves only
  // for datagrams that count.
  if (!e.verified) return Verdict::unverified;
  if (e.who.node != from.node || e.who.incarnation != from.incarnation) return Verdict::wrong_sender;
  if (!e.window.accept(counter)) return Verdict::replayed;
  e.last = now;
  return now - e.proven_at <= limits_.proof_age ? Verdict::fresh : Verdict::stale;
}

void PeerSessions::park(const SessionId& s, std::uint64_t counter, std::string body) {
  auto it = sessions_.find(s);
  if (it == sessions_.end() || counter <= it->second.parked_counter) return;
  it->second.parked = std::move(body);
  it->second.parked_counter = counter;
}

bool PeerSessions::due(const SessionId& s, Time now) const {
  auto it = sessions_.find(s);
  if (it == sessions_.end()) return false;
  const auto& e = it->second;
  if (e.challenged != Time{} && now - e.challenged < interval(e)) return false;
  // Renewed from a quarter of its age on: several tries before it runs out.
  return !e.verified || now - e.proven_at >= limits_.proof_age / 4;
}

// A verified session may be challenged again every eighth of the proof's
// age: at a short failure timeout (the proof's age) challenge_interval alone is
// longer than the proof, which then lapsed between answers and its peer
// looked silent, suspected and probed several times a second. Only a
// verified session paces faster: its datagrams must pass its replay window,
// so its challenges follow the live peer's own traffic, while an unverified
// one (possibly a recording) stays at challenge_interval.
Duration PeerSessions::interval(const Entry& e) const {
  return e.verified ? std::min(limits_.challenge_interval, limits_.proof_age / 8) : limits_.challenge_interval;
}

bool PeerSessions::challenge(const SessionId& s, std::uint64_t nonce, Time now) {
  if (!due(s, now)) return false;
  auto& e = sessions_.find(s)->second;
  // Kept beside the last few: an answer slower than the interval still counts.
  e.pending[e.next_pending] = Pending{nonce, now};
  e.next_pending = (e.next_pending + 1) % kNonces;
  e.challenged = now;
  return true;
}

std::optional<Time> PeerSessions::take_nonce(Entry& e, std::uint64_t nonce, Time now) {
  for (auto& p : e.pending) {
    if (p.nonce == 0 || p.nonce != nonce || now - p.sent > limits_.nonce_ttl) continue;
    auto sent = p.sent;
    p = Pending{};
    return sent;
  }
  return std::nullopt;
}

std::optional<std::string> PeerSessions::on_answer(const SessionId& s, std::uint64_t nonce, std::uint64_t counter,
                                                   const Sender& from, Time now) {
  auto it = sessions_.find(s);
  if (it == sessions_.end()) return std::nullopt;
  auto& e = it->second;
  if (e.verified && (e.who.node != from.node || e.who.incarnation != from.incarnation)) return std::nullopt;
  auto sent = take_nonce(e, nonce, now);
  if (!sent) return std::nullopt;
  if (!e.verified) {
    e.verified = true;
    e.who = from;
    // Only what the session seals from now on counts: anything older may be a recording.
    e.window.reset(counter);
  } else {
    e.window.accept(counter);
  }
  // Parked while unverified or stale: its sender is proven live now.
  std::string parked;
  parked.swap(e.parked);
  e.last = now;
  // The answer proves the process live when the challenge left, no later.
  e.proven_at = std::max(e.proven_at, *sent);
  prove(from, e.proven_at);
  return parked;
}

void PeerSessions::prove(const Sender& who, Time sent) {
  auto& p = proofs_[who.node];
  if (p.first != who.incarnation || p.second < sent) p = {who.incarnation, sent};
}

bool PeerSessions::proven(const Sender& who, Time now) const {
  auto it = proofs_.find(who.node);
  return it != proofs_.end() && it->second.first == who.incarnation && now - it->second.second <= limits_.proof_age;
}

bool ChallengeLog::first(const SessionId& challenger, std::uint64_t counter) {
  auto it = seen_.find(challenger);
  if (it == seen_.end()) {
    if (seen_.size() >= max_) {
      auto oldest = seen_.begin();
      for (auto i = seen_.begin(); i != seen_.end(); ++i)
        if (i->second.second < oldest->second.second) oldest = i;
      seen_.erase(oldest);
    }
    it = seen_.emplace(challenger, std::make_pair(ReplayWindow{}, 0)).first;
  }
  it->second.second = ++tick_;
  return it->second.first.accept(counter);
}

std::size_t challenge_answer_cap(std::size_t members, Duration failure_timeout) {
  auto per_member = milliseconds(800) / std::max(failure_timeout, Duration(milliseconds(1)));
  auto others = members > 1 ? members - 1 : 1;
  return std::max<std::size_t>(200, 2 * others * static_cast<std::size_t>(per_member));
}

}  // namespace rg::grid
