// MemberChange: one member change, from the read of the configuration
// record to its settling (the steps are in member_change.h).
#include "grid/member_change.h"

#include <algorithm>

#include <fmt/format.h>

namespace rg::grid {

namespace {

constexpr int kMaxAttempts = 6;  // no_quorum answers in a row, per stage

std::optional<RegValue> same(const std::optional<RegValue>& cur) { return cur; }

}  // namespace

Topology ConfigRecord::topology() const {
  std::vector<Topology::Member> members;
  for (std::size_t i = 0; i < ids.size() && i < indices.size(); ++i) members.push_back({ids[i], indices[i]});
  return Topology(version, std::move(members));
}

ConfigRecord ConfigRecord::of(const Topology& t, bool settled) {
  ConfigRecord r;
  r.version = t.version();
  for (const auto& m : t.indexed()) {
    r.ids.push_back(m.id);
    r.indices.push_back(m.index);
    r.next_index = std::max<MemberIndex>(r.next_index, static_cast<MemberIndex>(m.index + 1));
  }
  r.settled = settled;
  return r;
}

RegValue config_to_register(const ConfigRecord& r) { return RegValue{encode(r), LeaseTag{}}; }

std::optional<ConfigRecord> config_from_register(const RegValue& v) {
  ConfigRecord r;
  if (!decode(v.data, r) || r.ids.size() != r.indices.size()) return std::nullopt;
  try {
    r.topology();  // checks ids and indices
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
  return r;
}

std::optional<ConfigRecord> changed(const ConfigRecord& current, const NodeId& id, bool add, std::string& why) {
  auto members = current.topology().indexed();
  auto it = std::find_if(members.begin(), members.end(), [&](const Topology::Member& m) { return m.id == id; });
  if (add && it != members.end()) return why = fmt::format("{} is a member already", id), std::nullopt;
  if (!add && it == members.end()) return why = fmt::format("{} is not a member", id), std::nullopt;
  if (!add && members.size() == 1) return why = "the last member cannot be removed", std::nullopt;
  if (add && current.next_index >= 255) return why = "member indices have run out (255 over the cluster's life)", std::nullopt;
  if (add) {
    if (!valid_node_id(id)) return why = fmt::format("'{}' is not a valid node id", id), std::nullopt;
    members.push_back({id, current.next_index});
  } else {
    members.erase(it);
  }
  ConfigRecord next = ConfigRecord::of(Topology(current.version + 1, members), false);
  next.next_index = std::max<MemberIndex>(next.next_index, static_cast<MemberIndex>(current.next_index + add));
  return next;
}

const char* to_string(MemberChange::Stage s) {
  using S = MemberChange::Stage;
  switch (s) {
    case S::reading: return "reading the configuration";
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

void MemberChange::start(QuorumProposer& p, Time now, QOut& out) {
  attempts_ = 0;
  read(p, now, out);
}

std::uint64_t MemberChange::ask_read(const std::string& key, QuorumProposer& p, Time now, QOut& out) {
  std::uint64_t op = p.cas(key, same, now, out);
  waiting_.push_back(op);
  return op;
}

void MemberChange::read(QuorumProposer& p, Time now, QOut& out) {
  stage_ = Stage::reading;
  waiting_.clear();
  ask_read(kMembersKey, p, now, out);
}

void MemberChange::fail(std::string why) {
  stage_ = Stage::failed;
  why_ = std::move(why);
  waiting_.clear();
}

void MemberChange::on_result(const CasResult& r, QuorumProposer& p, Time now, QOut& out) {
  auto it = std::find(waiting_.begin(), waiting_.end(), r.op);
  if (it == waiting_.end()) return;
  waiting_.erase(it);
  bool answered = r.outcome == CasOutcome::committed || r.outcome == CasOutcome::precondition_failed;
  if (!answered) {
    // No majority (or a stale configuration, which the shell is fetching):
    // the stage starts again; adopted() restarts it sooner.
    if (++attempts_ >= kMaxAttempts) return fail(fmt::format("{}: {}", to_string(stage_), r.reason));
    waiting_.clear();
    switch (stage_) {
      case Stage::reading: return read(p, now, out);
      case Stage::changing: return read(p, now, out);  // it may have committed: the read tells
      case Stage::fencing: return fence(p, now, out);
      case Stage::catching_up: return catch_up(p, now, out);
      case Stage::settling: return settle(p, now, out);
      default: return;
    }
  }
  switch (stage_) {
    case Stage::reading: return on_read(r, p, now, out);
    case Stage::changing:
      if (r.outcome != CasOutcome::committed) {  // changed meanwhile: look again
        if (++attempts_ >= kMaxAttempts) return fail("changing: " + r.reason);
        return read(p, now, out);
      }
      made_ = config_from_register(*r.value);
      adopt_ = made_;
      own_change_ = true;
      stage_ = Stage::fencing;
      // The fence runs under the new configuration, once adopted.
      if (p.topology().version() >= made_->version) fence(p, now, out);
      return;
    case Stage::fencing: return catch_up(p, now, out);
    case Stage::catching_up:
      if (waiting_.empty()) settle(p, now, out);
      return;
    case Stage::settling: {
      auto rec = r.value ? config_from_register(*r.value) : std::nullopt;
      if (!rec || rec->version != made_->version || !rec->settled) return fail("the configuration moved while settling");
      if (own_change_) {
        stage_ = Stage::done;
        return;
      }
      // A change left unsettled by its operator, now settled: ours may be it.
      if (rec->topology().contains(id_) == add_) {
        stage_ = Stage::done;
        return;
      }
      attempts_ = 0;
      return change(*rec, p, now, out);
    }
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
  if (rec->version > ours) {
    adopt_ = rec;  // committed by our read: adopted() goes on once the shell adopts it
    return;
  }
  if (rec->version < ours) return fail("the register's configuration is older than this node's");
  attempts_ = 0;
  if (rec->settled) return change(*rec, p, now, out);
  made_ = rec;
  own_change_ = false;
  fence(p, now, out);
}

void MemberChange::change(const ConfigRecord& current, QuorumProposer& p, Time now, QOut& out) {
  std::string why;
  auto next = changed(current, id_, add_, why);
  if (!next) return fail(why);
  stage_ = Stage::changing;
  waiting_.clear();
  // Exactly from `current`: a change that raced us commits first or never.
  const std::uint64_t version = current.version;
  QuorumProposer::Change cas = [current, version, next = *next](const std::optional<RegValue>& cur)
      -> std::optional<RegValue> {
    std::optional<ConfigRecord> now_held = cur ? config_from_register(*cur) : std::nullopt;
    bool as_read = cur ? now_held && *now_held == current : version == 1;
    if (!as_read) return std::nullopt;
    return config_to_register(next);
  };
  waiting_.push_back(p.change_members(kMembersKey, std::move(cas), next->topology(), now, out));
}

void MemberChange::adopted(std::uint64_t version, QuorumProposer& p, Time now, QOut& out) {
  if (stage_ == Stage::fencing && made_ && version >= made_->version && waiting_.empty()) return fence(p, now, out);
  // A newer configuration than the one our read found or worked under:
  // look again (our operations under the older one are refused as stale).
  if (stage_ == Stage::reading && waiting_.empty()) read(p, now, out);
}

void MemberChange::fence(QuorumProposer& p, Time now, QOut& out) {
  stage_ = Stage::fencing;
  waiting_.clear();
  ask_read(kMembersKey, p, now, out);
}

void MemberChange::catch_up(QuorumProposer& p, Time now, QOut& out) {
  stage_ = Stage::catching_up;
  waiting_.clear();
  if (!plant_skip_catch_up)
    for (const auto& key : keys_) ask_read(key, p, now, out);
  if (waiting_.empty()) settle(p, now, out);
}

void MemberChange::settle(QuorumProposer& p, Time now, QOut& out) {
  stage_ = Stage::settling;
  waiting_.clear();
  ConfigRecord unsettled = *made_;
  QuorumProposer::Change cas = [unsettled](const std::optional<RegValue>& cur) -> std::optional<RegValue> {
    std::optional<ConfigRecord> held = cur ? config_from_register(*cur) : std::nullopt;
    if (!held || held->version != unsettled.version) return std::nullopt;
    ConfigRecord settled = *held;
    settled.settled = true;
    return config_to_register(settled);  // the same record again if another node settled it first
  };
  waiting_.push_back(p.cas(kMembersKey, std::move(cas), now, out));
}

}  // namespace rg::grid
