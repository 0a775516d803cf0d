#include "grid/sessions.h"

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
  }
  return it->second;
}

// Forgets idle sessions; if still full, the least recently heard one,
// unverified first (a replayer cannot push out a live peer).
void PeerSessions::make_room(Time now) {
  for (auto it = sessions_.begin(); it != sessions_.end();)
    it = now - it->second.last > limits_.idle_expiry ? sessions_.erase(it) : std::next(it);
  while (sessions_.size() >= limits_.max_sessions) {
    auto victim = sessions_.begin();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      auto key = [](const Entry& e) { return std::make_pair(e.verified, e.last); };
      if (key(it->second) < key(victim->second)) victim = it;
    }
    sessions_.erase(victim);
  }
}

PeerSessions::Verdict PeerSessions::check(const SessionId& s, std::uint64_t counter, const Sender& from, Time now) {
  auto& e = entry(s, now);
  if (!e.verified) {
    if (e.last == Time{}) e.last = now;  // an unverified replay does not keep itself alive
    return Verdict::unverified;
  }
  if (e.who.node != from.node || e.who.incarnation != from.incarnation) return Verdict::wrong_sender;
  if (!e.window.accept(counter)) return Verdict::replayed;
  e.last = now;
  return Verdict::fresh;
}

void PeerSessions::park(const SessionId& s, std::string body) {
  auto it = sessions_.find(s);
  if (it != sessions_.end() && !it->second.verified) it->second.parked = std::move(body);
}

bool PeerSessions::challenge(const SessionId& s, std::uint64_t nonce, Time now) {
  auto it = sessions_.find(s);
  if (it == sessions_.end() || it->second.verified) return false;
  auto& e = it->second;
  if (e.nonce != 0 && now - e.challenged < limits_.challenge_interval) return false;
  e.nonce = nonce;
  e.challenged = now;
  return true;
}

std::optional<std::string> PeerSessions::on_answer(const SessionId& s, std::uint64_t nonce, std::uint64_t counter,
                                                   const Sender& from, Time now) {
  auto it = sessions_.find(s);
  if (it == sessions_.end() || it->second.verified || it->second.nonce == 0 || it->second.nonce != nonce)
    return std::nullopt;
  auto& e = it->second;
  e.verified = true;
  e.who = from;
  e.nonce = 0;
  e.last = now;
  // Only what the session seals from now on counts: anything older may be a recording.
  e.window.reset(counter);
  std::string parked;
  parked.swap(e.parked);
  return parked;
}

}  // namespace rg::grid
