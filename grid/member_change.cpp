// MemberChange: one member change, from the read of the configuration
// record to its settling (the steps are in member_change.h).
#include "grid/member_change.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

namespace rg::grid {

namespace {

constexpr int kMaxAttempts = 6;   // no_quorum answers in a row, per stage
constexpr int kMaxFailures = 18;  // in all: a change that never gets both majorities ends
constexpr int kMaxLeaseWaits = 6;  // in all: each waits out the leases one round of refusals reported
// Past the refused lease's end: the clocks' rates may differ by the stated
// drift bound (5%), and the message takes its way.
constexpr std::int64_t kLeaseMarginMs = 20;
constexpr std::int64_t kDriftPercent = 5;
// A lease refusal that did not say how long (the deadline passed).
constexpr std::int64_t kUnknownLeaseMs = 200;
// A refusal for a newer configuration is followed by that configuration
// within a round trip: the shell asks the refuser. If the ask or the answer
// is lost, or the refuser died, the change reads again after this (refused
// again, it asks again), within the stage's budget: it never waits for good.
constexpr auto kStaleWait = milliseconds(1000);

std::optional<RegValue> same(const std::optional<RegValue>& cur) { return cur; }

// A read of the record that writes back no version above `version`: a newer
// one may be a change accepted by a majority of ours but not yet by one of
// the configuration it makes, and completing it with our majority alone
// could commit a configuration that cannot run (removing c from {a,b,c}
// while b is down). Refused, it still leaves our tag at a majority.
QuorumProposer::Change record_up_to(std::uint64_t version) {
  return [version](const std::optional<RegValue>& cur) -> std::optional<RegValue> {
    auto rec = cur ? config_from_register(*cur) : std::nullopt;
    if (rec && rec->version > version) return std::nullopt;
    return cur;
  };
}

}  // namespace

const char* to_string(MemberChange::Stage s) {
  using S = MemberChange::Stage;
  switch (s) {
    case S::reading: return "reading the configuration";
    case S::completing: return "completing a change found half way";
    case S::changing: return "changing";
    case S::fencing: return "fencing";
    case S::catching_up: return "catching up";
    case S::settling: return "settling";
    case S::done: return "done";
    case S::failed: return "failed";
  }
  return "?";
}

MemberChange::MemberChange(NodeId id, bool add, std::vector<std::string> keys)
    : id_(std::move(id)), add_(add), keys_(std::move(keys)) {
  std::erase(keys_, std::string(kMembersKey));
}

void MemberChange::start(QuorumProposer& p, Time now, QOut& out) { read(p, now, out); }

// Enters `s`: each stage has its own budget of retries.
void MemberChange::to(Stage s) {
  if (s != stage_) attempts_ = 0;
  stage_ = s;
  waiting_.clear();
  lease_wait_.reset();
  lease_keys_.clear();
  stale_wait_.reset();
}

void MemberChange::ask(const std::string& key, QuorumProposer::Change change, QuorumProposer& p, Time now,
                       QOut& out) {
  track(p.cas(key, std::move(change), now, out), key, p);
}

// The stage waits for `op`, asked under the node's configuration now.
void MemberChange::track(std::uint64_t op, const std::string& key, const QuorumProposer& p) {
  waiting_[op] = key;
  asked_under_ = p.topology().version();
}

// The record as a majority of our configuration holds it; a newer version
// found is completed by on_read with both majorities.
void MemberChange::read(QuorumProposer& p, Time now, QOut& out) {
  to(Stage::reading);
  ask(kMembersKey, record_up_to(p.topology().version()), p, now, out);
}

void MemberChange::fail(std::string why) {
  to(Stage::failed);
  why_ = std::move(why);
}

void MemberChange::on_result(const CasResult& r, QuorumProposer& p, Time now, QOut& out) {
  auto it = waiting_.find(r.op);
  if (it == waiting_.end()) return;
  const std::string key = it->second;
  waiting_.erase(it);
  if (r.stale_config) {
    // Adopted meanwhile: start again now. Otherwise the shell fetches the
    // newer configuration, and adopted() starts again.
    if (p.topology().version() > asked_under_) return read(p, now, out);
    to(Stage::reading);
    stale_wait_ = now + kStaleWait;
    return;
  }
  bool answered = r.outcome == CasOutcome::committed || r.outcome == CasOutcome::precondition_failed;
  if (!answered && wait_lease(key, r, now)) return;
  if (!answered) return retry(key, r, p, now, out);
  switch (stage_) {
    case Stage::reading: return on_read(r, p, now, out);
    case Stage::completing:
    case Stage::changing: return on_changed(r, p, now, out);
    case Stage::fencing: return catch_up(p, now, out);
    case Stage::catching_up:
      if (waiting_.empty() && !lease_wait_) settle(p, now, out);
      return;
    case Stage::settling: return on_settled(r, p, now, out);
    default: return;
  }
}

// No majority: the same step again, within the stage's budget. A change
// may have committed all the same: the read tells.
void MemberChange::retry(const std::string& key, const CasResult& r, QuorumProposer& p, Time now, QOut& out) {
  if (++attempts_ >= kMaxAttempts || ++failures_ >= kMaxFailures)
    return fail(fmt::format("{}: {}", to_string(stage_), r.reason));
  again(key, p, now, out);
}

// A lease refused the step: asking again before it ends is refused again
// (an acceptor restarted with its state counts the lease it holds from its
// start, so a member back from a restart refuses for up to one lease), and
// would only use up the stage's budget. The step waits for it instead.
bool MemberChange::wait_lease(const std::string& key, const CasResult& r, Time now) {
  if (r.outcome != CasOutcome::lease_held || plant_no_lease_wait) return false;
  // Refusals of one round (the catch-up's keys at once) share one wait.
  if (!lease_wait_ && ++lease_waits_ > kMaxLeaseWaits) return false;
  lease_keys_.insert(key);
  std::int64_t left = r.lease_held_left_ms.value_or(kUnknownLeaseMs);
  Time until = now + milliseconds(left + left * kDriftPercent / 100 + kLeaseMarginMs);
  lease_wait_ = std::max(lease_wait_.value_or(until), until);
  return true;
}

void MemberChange::tick(QuorumProposer& p, Time now, QOut& out) {
  if (stale_wait_ && now >= *stale_wait_) {
    stale_wait_.reset();
    if (++attempts_ >= kMaxAttempts || ++failures_ >= kMaxFailures)
      return fail("refused for a newer configuration that this node could not learn");
    return read(p, now, out);
  }
  if (!lease_wait_ || now < *lease_wait_) return;
  lease_wait_.reset();
  for (const auto& key : std::exchange(lease_keys_, {})) again(key, p, now, out);
}

// The stage's step again (in the catch-up: that key only).
void MemberChange::again(const std::string& key, QuorumProposer& p, Time now, QOut& out) {
  switch (stage_) {
    case Stage::reading:
    case Stage::completing:
    case Stage::changing: return read(p, now, out);
    case Stage::fencing: return fence(p, now, out);
    case Stage::catching_up: ask(key, same, p, now, out); return;  // that key only
    case Stage::settling: return settle(p, now, out);
    default: return;
  }
}

void MemberChange::on_read(const CasResult& r, QuorumProposer& p, Time now, QOut& out) {
  const std::uint64_t ours = p.topology().version();
  if (!r.value) {
    // Never written: version 1, the --members list.
    if (ours != 1) return fail("the register holds no configuration, but this node runs a later one");
    return change(ConfigRecord::of(p.topology(), true), p, now, out);
  }
  auto rec = config_from_register(*r.value);
  if (!rec) return fail("the register's configuration record is malformed");
  if (rec->version == ours + 1) return complete(*rec, p, now, out);
  if (rec->version != ours)
    return fail(fmt::format("the register holds configuration {}, this node runs {}", rec->version, ours));
  if (!rec->settled) return settle_leftover(*rec, false, p, now, out);
  if (rec->topology().contains(id_) == add_) {  // done already (by another operator, or by us before)
    made_ = rec;
    to(Stage::done);
    return;
  }
  change(*rec, p, now, out);
}

// A change accepted by a majority of ours and maybe not yet committed:
// finished with the majorities of both configurations, as it began.
void MemberChange::complete(const ConfigRecord& found, QuorumProposer& p, Time now, QOut& out) {
  to(Stage::completing);
  RegValue value = config_to_register(found);
  QuorumProposer::Change again = [value](const std::optional<RegValue>& cur) -> std::optional<RegValue> {
    if (!cur || *cur != value) return std::nullopt;
    return value;
  };
  track(p.change_members(kMembersKey, std::move(again), found.topology(), now, out), kMembersKey, p);
}

void MemberChange::change(const ConfigRecord& current, QuorumProposer& p, Time now, QOut& out) {
  std::string why;
  auto next = changed(current, id_, add_, why);
  if (!next) return fail(why);
  to(Stage::changing);
  // Exactly from `current`: a change that raced us commits first or never.
  const std::uint64_t version = current.version;
  QuorumProposer::Change cas = [current, version, next = *next](const std::optional<RegValue>& cur)
      -> std::optional<RegValue> {
    std::optional<ConfigRecord> now_held = cur ? config_from_register(*cur) : std::nullopt;
    bool as_read = cur ? now_held && *now_held == current : version == 1;
    if (!as_read) return std::nullopt;
    return config_to_register(next);
  };
  track(p.change_members(kMembersKey, std::move(cas), next->topology(), now, out), kMembersKey, p);
}

// The change (ours, or one found half way) committed: the shell adopts it
// (take_adopt), and the fence follows under it.
void MemberChange::on_changed(const CasResult& r, QuorumProposer& p, Time now, QOut& out) {
  if (r.outcome != CasOutcome::committed) {  // changed meanwhile: look again
    if (++failures_ >= kMaxFailures) return fail(fmt::format("{}: {}", to_string(stage_), r.reason));
    return read(p, now, out);
  }
  auto rec = config_from_register(*r.value);
  if (!rec) return fail("the committed configuration record is malformed");
  adopt_ = rec;
  settle_leftover(*rec, stage_ == Stage::changing, p, now, out);
}

void MemberChange::settle_leftover(const ConfigRecord& rec, bool own, QuorumProposer& p, Time now, QOut& out) {
  made_ = rec;
  own_change_ = own;
  to(Stage::fencing);
  if (p.topology().version() >= made_->version) fence(p, now, out);
}

void MemberChange::adopted(std::uint64_t version, QuorumProposer& p, Time now, QOut& out) {
  if (!waiting_.empty() || lease_wait_) return;
  if (stage_ == Stage::fencing && made_ && version >= made_->version) return fence(p, now, out);
  // A newer configuration than the one we read or were refused under.
  if (stage_ == Stage::reading) read(p, now, out);
}

// Answered (committed, or refused because another operator has moved on
// already), a majority of the new configuration has our tag.
void MemberChange::fence(QuorumProposer& p, Time now, QOut& out) {
  to(Stage::fencing);
  ask(kMembersKey, record_up_to(made_->version), p, now, out);
}

void MemberChange::catch_up(QuorumProposer& p, Time now, QOut& out) {
  to(Stage::catching_up);
  if (!plant_skip_catch_up)
    for (const auto& key : keys_) ask(key, same, p, now, out);
  if (waiting_.empty()) settle(p, now, out);
}

void MemberChange::settle(QuorumProposer& p, Time now, QOut& out) {
  to(Stage::settling);
  ConfigRecord unsettled = *made_;
  ask(kMembersKey, [unsettled](const std::optional<RegValue>& cur) -> std::optional<RegValue> {
    std::optional<ConfigRecord> held = cur ? config_from_register(*cur) : std::nullopt;
    if (!held || held->version != unsettled.version) return std::nullopt;
    ConfigRecord settled = *held;
    settled.settled = true;
    return config_to_register(settled);  // the same record again if another node settled it first
  }, p, now, out);
}

void MemberChange::on_settled(const CasResult& r, QuorumProposer& p, Time now, QOut& out) {
  auto rec = r.value ? config_from_register(*r.value) : std::nullopt;
  if (!rec) return fail("the configuration record is gone or malformed");
  // Another operator settled it and changed on from it: ours is done, or
  // starts again from the newer one.
  if (rec->version > made_->version) {
    if (own_change_) return to(Stage::done);
    return read(p, now, out);
  }
  if (rec->version != made_->version || !rec->settled) return fail("the configuration moved while settling");
  // Ours, or a leftover that was our change all along: done.
  if (own_change_ || rec->topology().contains(id_) == add_) {
    to(Stage::done);
    return;
  }
  change(*rec, p, now, out);
}

}  // namespace rg::grid
