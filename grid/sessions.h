#pragma once
// PeerSessions: which datagram senders are proven live, lately, and which
// of their counters were already seen.
//
// A datagram opens under the cluster key, but that proves only that some
// process once sealed it: a recording replayed later opens just as well,
// and so does a live datagram an attacker held back. So:
// - A datagram counts only if its session (the sending process's random id
//   in the header) answered one of our challenges: a fresh random nonce,
//   sent to the address its authenticated heartbeat names, echoed back
//   sealed under that session. A recording cannot answer.
// - Each counter counts once (a replay window, as in IPsec and DTLS).
// - The proof is a lease: it shows the process was live when the challenge
//   left, and it counts for `proof_age` from then. Verified sessions are
//   challenged again from a quarter of that age on, at most every eighth of
//   it (so a short failure timeout, the proof's age, never lets it lapse).
//   Past it their datagrams (and the node's TCP traffic, see Node::heard)
//   refresh nothing until the next answer (the newest heartbeat is parked
//   meanwhile), so traffic held back and released after the sender died
//   keeps it alive for at most `proof_age`. A direct probe answered on its
//   own fresh connection proves the target too (prove()).
// Until a session is verified its datagrams are dropped and counted, but its
// newest heartbeat is parked and handed back once it answers, so a joiner
// (or a peer back from a pause) costs one round trip, not one heartbeat.
//
// Plain protocol code: no sockets, no clocks, no randomness (the caller
// passes the time and each nonce).
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/frame.h"
#include "grid/messages.h"

namespace rg::grid {

// Counters seen from one session: the highest, and a bitmap of the 64 below it.
class ReplayWindow {
 public:
  // Everything at or below `top` counts as seen.
  void reset(std::uint64_t top) {
    top_ = top;
    seen_ = ~std::uint64_t{0};
  }
  // True (and recorded) if `counter` was not seen before and is not too old.
  bool accept(std::uint64_t counter);

 private:
  std::uint64_t top_ = 0;
  std::uint64_t seen_ = 0;  // bit i: top_ - i was seen
};

struct SessionLimits {
  Duration challenge_interval = milliseconds(100);  // per session, at most one challenge per interval
  Duration proof_age = milliseconds(1000);          // an answer counts this long from its challenge
  Duration nonce_ttl = std::chrono::seconds(2);     // an answer must come within this
  Duration idle_expiry = std::chrono::seconds(60);  // a session not heard for this long is forgotten
  std::size_t max_sessions = 256;
};

class PeerSessions {
 public:
  enum class Verdict {
    fresh,         // counts
    stale,         // verified, new counter, but its proof ran out: refreshes nothing until answered again
    replayed,      // counter seen before (or too old)
    unverified,    // never answered
    wrong_sender,  // claims a sender other than the one that answered
  };

  explicit PeerSessions(SessionLimits limits = {}) : limits_(limits) {}

  // A datagram that opened from session `s`, claiming sender `from`.
  Verdict check(const SessionId& s, std::uint64_t counter, const Sender& from, Time now);
  // Keeps the newest heartbeat (by counter) of an unverified or stale session.
  void park(const SessionId& s, std::uint64_t counter, std::string datagram_body);
  // Whether session `s` is to be challenged now (unverified, or a quarter
  // of its proof used) and, if so, records `nonce` (the caller's fresh random) as
  // one it may answer.
  bool challenge(const SessionId& s, std::uint64_t nonce, Time now);
  // Whether challenge() would record one now (checked before the caller
  // does the work of addressing and drawing a nonce).
  bool due(const SessionId& s, Time now) const;
  // An answer sealed by session `s` with `counter`, echoing `nonce`, from
  // `from`. nullopt if it is not the answer to one of our challenges to `s`
  // in time; else the session is proven from when that challenge left, and
  // the value is its parked heartbeat to handle now ("" if none).
  std::optional<std::string> on_answer(const SessionId& s, std::uint64_t nonce, std::uint64_t counter,
                                       const Sender& from, Time now);
  // Process `who` was proven live at `sent` some other way (a direct probe).
  void prove(const Sender& who, Time sent);
  // True if process `who` answered a challenge (or a probe) that left within proof_age.
  bool proven(const Sender& who, Time now) const;
  std::size_t size() const { return sessions_.size(); }
  std::size_t verified() const;

 private:
  // Answers to the last 8 challenges are taken (slow round trips): with a
  // verified session challenged every eighth of the proof's age, one a whole
  // proof old is still among them.
  static constexpr std::size_t kNonces = 8;
  struct Pending {
    std::uint64_t nonce = 0;
    Time sent{};
  };
  struct Entry {
    bool verified = false;
    Sender who;
    ReplayWindow window;
    std::array<Pending, kNonces> pending{};
    std::size_t next_pending = 0;
    Time challenged{};  // last challenge sent
    Time proven_at{};   // when the newest answered challenge left
    Time last{};
    std::string parked;
    std::uint64_t parked_counter = 0;
  };
  Entry& entry(const SessionId& s, Time now);
  void make_room(Time now);
  std::optional<Time> take_nonce(Entry& e, std::uint64_t nonce, Time now);
  Duration interval(const Entry& e) const;

  SessionLimits limits_;
  std::map<SessionId, Entry> sessions_;
  std::map<NodeId, std::pair<Incarnation, Time>> proofs_;  // newest proof per node
};

// How many challenges a node answers per 100 ms. Only members can send a
// challenge that opens, and each renews its proof of us at most every
// eighth of the failure timeout (PeerSessions::due), so twice that for
// every other member, and never below 200 (2,000 a second). A fixed 200
// was below what 9 members at a 20 ms failure timeout ask when their
// answers are slow, and a refused answer lets a proof lapse.
std::size_t challenge_answer_cap(std::size_t members, Duration failure_timeout);

// Challenges already answered, per challenger session: a replayed
// challenge gets no second answer (so replays cannot use up the answer
// budget that real challengers need). Bounded; the oldest-touched go first.
class ChallengeLog {
 public:
  explicit ChallengeLog(std::size_t max = 512) : max_(max) {}
  // True (and recorded) the first time (session, counter) is seen.
  bool first(const SessionId& challenger, std::uint64_t counter);

 private:
  std::size_t max_;
  std::uint64_t tick_ = 0;
  std::map<SessionId, std::pair<ReplayWindow, std::uint64_t>> seen_;
};

}  // namespace rg::grid
