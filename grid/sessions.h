#pragma once
// PeerSessions: which datagram senders are proven live, and which of their
// counters were already seen.
//
// A datagram opens under the cluster key, but that proves only that some
// process once sealed it: a recording replayed later opens just as well.
// So a datagram counts only if its session (the sending process's random
// id in the header) is verified, and its counter is new in that session's
// replay window (as in IPsec and DTLS). A session is verified when it
// answers a challenge: a fresh random nonce sent to the address the
// datagram came from, echoed back sealed under that session. A recording
// cannot answer. Until then its datagrams are dropped and counted, but the
// latest heartbeat is parked and handed back once verified, so a joiner
// costs one round trip, not one heartbeat interval.
//
// Plain protocol code: no sockets, no clocks, no randomness (the caller
// passes the time and each nonce).
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
  Duration idle_expiry = std::chrono::seconds(60);  // a session not heard for this long is forgotten
  std::size_t max_sessions = 256;
};

class PeerSessions {
 public:
  enum class Verdict { fresh, replayed, unverified, wrong_sender };

  explicit PeerSessions(SessionLimits limits = {}) : limits_(limits) {}

  // A datagram that opened from session `s`, claiming sender `from`.
  Verdict check(const SessionId& s, std::uint64_t counter, const Sender& from, Time now);
  // Keeps the latest heartbeat of an unverified session (type and body).
  void park(const SessionId& s, std::string datagram_body);
  // Whether to challenge unverified session `s` now with `nonce` (the caller's fresh random).
  bool challenge(const SessionId& s, std::uint64_t nonce, Time now);
  // An answer sealed by session `s` with `counter`, echoing `nonce`, from
  // `from`: verifies the session if the nonce is the one sent to it. Returns
  // the parked heartbeat body to handle now ("" if none).
  std::optional<std::string> on_answer(const SessionId& s, std::uint64_t nonce, std::uint64_t counter,
                                       const Sender& from, Time now);
  std::size_t size() const { return sessions_.size(); }
  std::size_t verified() const;

 private:
  struct Entry {
    bool verified = false;
    Sender who;
    ReplayWindow window;
    std::uint64_t nonce = 0;  // the challenge in flight (0: none)
    Time challenged{};
    Time last{};
    std::string parked;
  };
  Entry& entry(const SessionId& s, Time now);
  void make_room(Time now);

  SessionLimits limits_;
  std::map<SessionId, Entry> sessions_;
};

}  // namespace rg::grid
