#include <doctest/doctest.h>

#include <map>
#include <vector>

#include "grid/sessions.h"

using namespace rg;
using namespace rg::grid;

namespace {
SessionId sid(unsigned char b) {
  SessionId s{};
  s.fill(b);
  return s;
}
const Time t0 = Time{} + std::chrono::hours(1);
}  // namespace

TEST_CASE("replay window: each counter once, nothing older than the window") {
  ReplayWindow w;
  CHECK(w.accept(1));
  CHECK_FALSE(w.accept(1));
  CHECK(w.accept(3));
  CHECK(w.accept(2));  // late but new
  CHECK_FALSE(w.accept(2));
  CHECK(w.accept(100));
  CHECK(w.accept(37));   // 63 below the top: still inside
  CHECK_FALSE(w.accept(36));  // 64 below: outside, refused even if never seen
  CHECK(w.accept(1000));  // a jump clears the bitmap
  CHECK_FALSE(w.accept(100));
  w.reset(5000);
  for (std::uint64_t c : {5000, 4999, 4937, 1})
    CHECK_FALSE(w.accept(c));
  CHECK(w.accept(5001));
}

TEST_CASE("sessions: nothing counts until the session answers its own challenge") {
  PeerSessions s;
  Sender n2{"n2", 7};
  auto a = sid(1);
  CHECK(s.check(a, 10, n2, t0) == PeerSessions::Verdict::unverified);
  s.park(a, 10, "heartbeat 10");
  s.park(a, 8, "heartbeat 8 (older, replayed)");  // the newest stays parked
  REQUIRE(s.challenge(a, 42, t0));
  CHECK_FALSE(s.challenge(a, 43, t0 + milliseconds(10)));  // one per interval
  // A wrong nonce (a recorded answer to an older challenge) verifies nothing.
  CHECK_FALSE(s.on_answer(a, 41, 11, n2, t0));
  CHECK(s.check(a, 12, n2, t0) == PeerSessions::Verdict::unverified);
  // Nor does the right nonce from another session.
  CHECK_FALSE(s.on_answer(sid(2), 42, 11, n2, t0));
  CHECK_FALSE(s.proven(n2, t0));
  auto parked = s.on_answer(a, 42, 20, n2, t0 + milliseconds(5));
  REQUIRE(parked);
  CHECK(*parked == "heartbeat 10");
  CHECK(s.proven(n2, t0 + milliseconds(5)));
  CHECK_FALSE(s.proven(Sender{"n2", 6}, t0 + milliseconds(5)));
  CHECK_FALSE(s.on_answer(a, 42, 21, n2, t0));  // each nonce answers once
  // Only what the session sealed after its answer counts, and each once.
  CHECK(s.check(a, 12, n2, t0) == PeerSessions::Verdict::replayed);
  CHECK(s.check(a, 20, n2, t0) == PeerSessions::Verdict::replayed);
  CHECK(s.check(a, 21, n2, t0) == PeerSessions::Verdict::fresh);
  CHECK(s.check(a, 21, n2, t0) == PeerSessions::Verdict::replayed);
  // The session speaks for the process that answered, no other.
  CHECK(s.check(a, 22, Sender{"n3", 7}, t0) == PeerSessions::Verdict::wrong_sender);
  CHECK(s.check(a, 23, Sender{"n2", 6}, t0) == PeerSessions::Verdict::wrong_sender);
  CHECK(s.verified() == 1);
}

TEST_CASE("sessions: the proof is a lease from when its challenge left; it is renewed from a quarter of its age") {
  SessionLimits lim;
  lim.proof_age = milliseconds(1000);
  PeerSessions s(lim);
  Sender n2{"n2", 7};
  auto a = sid(1);
  s.check(a, 1, n2, t0);
  REQUIRE(s.challenge(a, 5, t0));
  // The answer comes late (held back 300 ms): it proves n2 live at t0, no later.
  REQUIRE(s.on_answer(a, 5, 2, n2, t0 + milliseconds(300)));
  CHECK(s.check(a, 3, n2, t0 + milliseconds(400)) == PeerSessions::Verdict::fresh);
  CHECK_FALSE(s.challenge(a, 6, t0 + milliseconds(200)));  // not due yet
  CHECK(s.challenge(a, 6, t0 + milliseconds(250)));        // due: a quarter of the age
  // Unanswered (n2 died at t0 + 240 ms, say): held-back datagrams sealed
  // before its death still open and are new to the window, but from
  // proof_age on they refresh nothing; the newest heartbeat is parked.
  CHECK(s.check(a, 4, n2, t0 + milliseconds(1000)) == PeerSessions::Verdict::fresh);
  CHECK(s.check(a, 5, n2, t0 + milliseconds(1001)) == PeerSessions::Verdict::stale);
  s.park(a, 5, "heartbeat 5");
  CHECK_FALSE(s.proven(n2, t0 + milliseconds(1001)));
  // A live n2 answers any of its last few challenges, even a slow one; the
  // parked heartbeat comes back with the answer.
  REQUIRE(s.challenge(a, 7, t0 + milliseconds(1100)));
  REQUIRE(s.challenge(a, 8, t0 + milliseconds(1200)));
  auto parked = s.on_answer(a, 6, 9, n2, t0 + milliseconds(1250));  // the answer to the one sent at +250
  REQUIRE(parked);
  CHECK(*parked == "heartbeat 5");
  CHECK(s.check(a, 10, n2, t0 + milliseconds(1250)) == PeerSessions::Verdict::fresh);
  CHECK(s.proven(n2, t0 + milliseconds(1250)));
  CHECK_FALSE(s.proven(n2, t0 + milliseconds(1251)));
  REQUIRE(s.on_answer(a, 8, 11, n2, t0 + milliseconds(1300)));
  CHECK(s.proven(n2, t0 + milliseconds(2200)));
  // Too late: an answer after nonce_ttl does not count.
  REQUIRE(s.challenge(a, 9, t0 + milliseconds(2000)));
  CHECK_FALSE(s.on_answer(a, 9, 12, n2, t0 + milliseconds(2000) + lim.nonce_ttl + milliseconds(1)));
  // A probe answered by n2 proves it as well (its TCP traffic then counts).
  s.prove(n2, t0 + milliseconds(5000));
  CHECK(s.proven(n2, t0 + milliseconds(5900)));
  CHECK_FALSE(s.proven(Sender{"n2", 8}, t0 + milliseconds(5900)));
}

TEST_CASE("sessions: a proof shorter than the challenge interval never lapses for a live peer; recordings stay slow") {
  SessionLimits lim;
  lim.proof_age = milliseconds(50);  // a 50 ms failure timeout
  REQUIRE(lim.challenge_interval == milliseconds(100));
  PeerSessions s(lim);
  Sender n2{"n2", 7};
  auto live = sid(1), recording = sid(2);
  std::uint64_t counter = 1, nonce = 100;
  int stale = 0, unproven = 0, recording_challenges = 0;
  s.check(live, counter++, n2, t0);
  REQUIRE(s.challenge(live, nonce, t0));
  REQUIRE(s.on_answer(live, nonce++, counter++, n2, t0 + milliseconds(1)));
  // n2 heartbeats every 10 ms and answers each challenge in 1 ms; a
  // replayed recording of another session arrives every millisecond.
  for (int ms = 10; ms < 2000; ++ms) {
    auto now = t0 + milliseconds(ms);
    s.check(recording, 1, Sender{"n3", 1}, now);
    recording_challenges += s.challenge(recording, 1'000'000 + ms, now);
    unproven += !s.proven(n2, now);
    if (ms % 10) continue;
    stale += s.check(live, counter++, n2, now) != PeerSessions::Verdict::fresh;
    if (s.challenge(live, nonce, now)) REQUIRE(s.on_answer(live, nonce++, counter++, n2, now + milliseconds(1)));
  }
  CHECK(stale == 0);
  CHECK(unproven == 0);
  CHECK(recording_challenges <= 20);  // one per 100 ms at most
}

namespace {
// One live peer seen by a node at failure timeout `proof`: a datagram from
// it every `every`, each answer to a challenge back `delay` later. Returns
// the most challenges sent in any 100 ms and the milliseconds (after the
// first 100) in which the peer was not proven.
std::pair<int, int> renewals(Duration proof, Duration delay, Duration every) {
  SessionLimits lim;
  lim.proof_age = proof;
  PeerSessions s(lim);
  Sender n2{"n2", 7};
  auto a = sid(1);
  std::uint64_t counter = 1, nonce = 1;
  std::map<Time, std::uint64_t> answers;  // arrival -> nonce
  std::vector<Time> sent;
  int unproven = 0;
  for (auto now = t0; now < t0 + milliseconds(2000); now += milliseconds(1)) {
    while (!answers.empty() && answers.begin()->first <= now) {
      s.on_answer(a, answers.begin()->second, counter++, n2, now);
      answers.erase(answers.begin());
    }
    if ((now - t0) % every == Duration::zero()) {
      s.check(a, counter++, n2, now);
      if (s.challenge(a, nonce, now)) {
        answers[now + delay] = nonce++;
        sent.push_back(now);
      }
    }
    if (now >= t0 + milliseconds(100)) unproven += !s.proven(n2, now);
  }
  int most = 0;
  for (std::size_t i = 0, j = 0; j < sent.size(); ++j) {
    while (sent[j] - sent[i] >= milliseconds(100)) ++i;
    most = std::max(most, static_cast<int>(j - i + 1));
  }
  return {most, unproven};
}
}  // namespace

TEST_CASE("sessions: slow answers still keep a short proof; what members ask fits the answer cap") {
  // A datagram every millisecond (multicast writes), 20 ms failure timeout.
  auto [fast_most, fast_gaps] = renewals(milliseconds(20), milliseconds(1), milliseconds(1));
  CHECK(fast_gaps == 0);
  CHECK(fast_most <= 4 * 100 / 20 + 1);  // from a quarter of the proof's age on
  // Answers slower than the retry interval: retried every eighth of it.
  auto [slow_most, slow_gaps] = renewals(milliseconds(20), milliseconds(4), milliseconds(1));
  CHECK(slow_gaps == 0);
  CHECK(slow_most <= 8 * 100 / 20 + 1);
  // Answers three quarters of the proof late: taken while they are among the
  // last 8 challenges.
  auto [late_most, late_gaps] = renewals(milliseconds(20), milliseconds(15), milliseconds(1));
  CHECK(late_gaps == 0);
  // 8 other members asking at the slow rate fit the answer cap of a 9-node
  // cluster, at 20 ms and at the 10 ms minimum.
  CHECK(8 * static_cast<std::size_t>(slow_most) <= challenge_answer_cap(9, milliseconds(20)));
  auto [ten_most, ten_gaps] = renewals(milliseconds(10), milliseconds(3), milliseconds(1));
  CHECK(ten_gaps == 0);
  CHECK(8 * static_cast<std::size_t>(ten_most) <= challenge_answer_cap(9, milliseconds(10)));
  // At the default 1000 ms the cap stays 200 per 100 ms.
  CHECK(challenge_answer_cap(5, milliseconds(1000)) == 200);
}

TEST_CASE("challenge log: a replayed challenge gets no second answer") {
  ChallengeLog log(2);
  CHECK(log.first(sid(1), 5));
  CHECK_FALSE(log.first(sid(1), 5));
  CHECK(log.first(sid(1), 6));
  CHECK(log.first(sid(2), 1));
  CHECK(log.first(sid(3), 1));  // evicts the oldest-touched (sid 1)
  CHECK_FALSE(log.first(sid(3), 1));
  CHECK_FALSE(log.first(sid(2), 1));
}

TEST_CASE("sessions: bounded, idle ones forgotten, a replayer cannot push out a live peer") {
  SessionLimits lim;
  lim.max_sessions = 4;
  lim.idle_expiry = std::chrono::seconds(10);
  PeerSessions s(lim);
  Sender n2{"n2", 1};
  auto live = sid(200);
  s.check(live, 1, n2, t0);
  REQUIRE(s.challenge(live, 9, t0));
  REQUIRE(s.on_answer(live, 9, 1, n2, t0));
  for (unsigned char b = 1; b <= 50; ++b) s.check(sid(b), 1, n2, t0 + milliseconds(b));
  CHECK(s.size() <= 4);
  CHECK(s.check(live, 2, n2, t0 + milliseconds(60)) == PeerSessions::Verdict::fresh);
  // Silent for longer than the expiry: forgotten when room is next made.
  s.check(sid(99), 1, n2, t0 + std::chrono::seconds(30));
  CHECK(s.check(live, 3, n2, t0 + std::chrono::seconds(30)) == PeerSessions::Verdict::unverified);
}
