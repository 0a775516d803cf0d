// AcceptorHost: durability and recovery around a node's QuorumAcceptor
// (the rules are in acceptor_host.h).
#include "grid/acceptor_host.h"

#include <algorithm>
#include <charconv>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace rg::grid {

AcceptorHost::AcceptorHost(AcceptorHostConfig config, StateStore* store, std::optional<DurableState> loaded,
                           Time now, std::uint64_t nonce)
    : config_(std::move(config)), store_(store), nonce_(nonce), born_(now) {
  acceptor_.plant_every_accept_restarts_lease(config_.plant.reads_restart_lease);
  acceptor_.plant_no_config_fence(config_.plant.no_config_fence);
  if (loaded) {
    // The lease clocks restart now: the process was down meanwhile, so a
    // lease only gets longer.
    for (const auto& s : loaded->slots) acceptor_.adopt(s, now);
    notes_ = std::move(loaded->notes);
    if (auto node = notes_.extract(kConfigSeenNote)) acceptor_.adopt_config_seen(parse_config_tag(node.mapped()));
    removed_ = notes_.erase(kRemovedNote) > 0;
    if (auto node = notes_.extract(kConfigNote)) {
      ConfigRecord r;  // saved by snapshot(): the members, without the change that made them
      if (decode(node.mapped(), r) && r.version > config_.topology.version()) config_.topology = r.topology();
    }
    ready_ = true;
    events_.push_back("+quorum-ready: acceptor state loaded intact from the data dir");
  } else if (config_.topology.size() == 1) {
    // A lone member's earlier votes were counted only by its own proposer,
    // which died with it.
    become_ready("a single member has no peer to recover from");
  }
}

template <class Answer, class F>
std::optional<Answer> AcceptorHost::vote(F&& step) {
  if (!voting()) return std::nullopt;
  if (!store_) return step(acceptor_);
  QuorumAcceptor before = acceptor_;  // a key or two: cheap to copy
  Answer answer = step(acceptor_);
  if (acceptor_.changes() != before.changes() && !persist() && !config_.plant.vote_unsaved) {
    acceptor_ = std::move(before);
    return std::nullopt;
  }
  return answer;
}

std::optional<QPromise> AcceptorHost::on_prepare(const QPrepare& m, Time now) {
  return vote<QPromise>([&](QuorumAcceptor& a) { return a.on_prepare(m, now); });
}

std::optional<QAccepted> AcceptorHost::on_accept(const QAccept& m, Time now) {
  return vote<QAccepted>([&](QuorumAcceptor& a) { return a.on_accept(m, now); });
}

std::optional<QRecoverState> AcceptorHost::on_recover_request(const NodeId& from, const QRecoverRequest& m,
                                                              Time now) {
  // Rule 1 for answers: "recovering" also vouches that our own earlier
  // life's votes can no longer be counted. A ready acceptor's state already
  // holds everything it voted.
  // Removed: it forgot its slots, and its answer would vouch for nothing.
  if (ready_ && removed_) return std::nullopt;
  if (!ready_ && from != config_.self && known(from)) owed_[from] = m.nonce;
  if (!ready_ && waiting(now)) return std::nullopt;
  QRecoverState s;
  s.nonce = m.nonce;
  s.recovering = !ready_;
  if (ready_) {
    s.slots = acceptor_.export_state();
    s.config_seen = acceptor_.config_seen();
  }
  return s;
}

void AcceptorHost::on_recover_state(const NodeId& from, const QRecoverState& m, Time now) {
  if (ready_ || from == config_.self || !(known(from) || heard_.contains(from))) return;
  if (m.nonce != nonce_ || waiting(now)) return;  // rules 3 and 1
  if (m.recovering && config_.plant.count_recovering_peers) {
    counted_.insert(from);  // the planted bug: an answer that vouches for nothing counts
  } else if (m.recovering) {
    latest_[from] = Answer::recovering;
  } else {
    bool holds = false;
    for (const auto& slot : m.slots) {
      note_record(slot);
      holds = holds || slot.has_value;
    }
    latest_[from] = holds ? Answer::holding : Answer::blank;
    answers_[from] = m;
    counted_.insert(from);
  }
  if (recovered()) {
    Topology in = recovered_config();
    std::string which = in.version() > config_.topology.version()
                            ? fmt::format(" (configuration version {}: {})", in.version(), fmt::join(in.members(), ","))
                            : std::string();
    take_answers(now);
    return become_ready(fmt::format("acceptor state recovered from {}{}", fmt::join(counted_, ","), which));
  }
  if (bootstrap_possible()) {
    take_answers(now);  // the promises they hold
    become_ready("bootstrap: no other member holds an accepted value (each is recovering or holds none), so "
                 "there is nothing to recover; starting empty");
  }
}

// Bootstrap is for a cluster that never changed its members (a record, or
// a later configuration's tag, anywhere means values to recover): every
// other member answered, and none holds a value.
bool AcceptorHost::bootstrap_possible() {
  if (!records_.empty() || config_.joining || seen_beyond_records()) return false;
  std::size_t others = 0;
  for (const auto& id : config_.topology.members()) {
    if (id == config_.self) continue;
    auto it = latest_.find(id);
    if (it == latest_.end()) return false;
    if (it->second == Answer::holding) return false;
    ++others;
  }
  if (others == 0) return false;
  if (other_list_) {
    if (!held_logged_)
      events_.push_back(fmt::format("+bootstrap-held: {} of this cluster runs on another member list; no new "
                                    "cluster starts beside it: restart this node once that list's nodes are gone "
                                    "(README, \"Changing the members\")",
                                    *other_list_));
    held_logged_ = true;
    return false;
  }
  return true;
}

// Adopts what the counted answers hold: only members of the configurations
// recovery waited for. Anyone else may be a member removed long ago that
// never heard of it, holding a value it accepted as one of a minority at a
// ballot above what was chosen since.
void AcceptorHost::take_answers(Time now) {
  auto configs = needed();
  for (const auto& [id, m] : answers_) {
    bool member = std::any_of(configs.begin(), configs.end(), [&](const Topology& t) { return t.contains(id); });
    if (!member) continue;
    acceptor_.adopt_config_seen(m.config_seen);
    for (const auto& slot : m.slots) acceptor_.adopt(slot, now);
  }
  answers_.clear();
}

void AcceptorHost::heard_other_list(const NodeId& who) { other_list_ = who; }

// Removed from the configuration: the slots go, and until it is added again
// it answers nobody's recovery (saved with the state, so also after a
// restart): an answer with nothing in it could count for a configuration it
// was a member of, whose values it no longer holds.
void AcceptorHost::forget() {
  acceptor_.forget_slots();
  removed_ = true;
}

void AcceptorHost::heard(const NodeId& who) {
  if (!ready_ && who != config_.self) heard_.insert(who);
}

bool AcceptorHost::adopted(const Topology& t, bool settled) {
  if (t.version() < config_.topology.version()) return disk_error_.empty();
  // Still recovering: nothing is saved before recovery ends (become_ready
  // saves the configuration with the recovered state). A save now would
  // leave a file that loads as intact, and a restart would vote at once
  // from a state that never recovered (a review's finding).
  if (!ready_) {
    if (t.version() > config_.topology.version()) config_.topology = t;
    return true;
  }
  // A configuration without us forgets our slots only once settled: until
  // its catch-up ran, our slots may be the last copy of a value the one
  // before chose (with another member's state lost), and a recovering
  // member of that one needs our answer.
  const bool forgets = settled && !t.contains(config_.self) && !removed_;
  if (t.version() == config_.topology.version() && !forgets) return disk_error_.empty();
  config_.topology = t;
  acceptor_.adopt_config_seen(tag_of(t));
  if (forgets) forget();
  if (t.contains(config_.self)) removed_ = false;  // added (again): its votes count from now on
  return !store_ || persist();
}

std::vector<NodeId> AcceptorHost::requests_due(Time now) {
  if (ready_ || waiting(now) || now < next_ask_) return {};
  next_ask_ = now + config_.retry_interval;
  std::set<NodeId> ask;
  auto add = [&](const Topology& t) {
    for (const auto& id : t.members())
      if (id != config_.self && !counted_.contains(id)) ask.insert(id);
  };
  add(config_.topology);
  for (const auto& t : needed()) add(t);
  for (const auto& id : heard_)
    if (!counted_.contains(id)) ask.insert(id);
  return {ask.begin(), ask.end()};
}

// --- recovery across configurations (acceptor_host.h) ---

bool AcceptorHost::known(const NodeId& id) const {
  if (config_.topology.contains(id)) return true;
  for (const auto& r : records_) {
    if (r.topology().contains(id)) return true;
    if (auto p = r.previous(); p && p->contains(id)) return true;
  }
  return false;
}

void AcceptorHost::note_record(const QSlotState& slot) {
  if (slot.key != kMembersKey || !slot.has_value) return;
  auto rec = config_from_register(slot.value);
  if (rec && std::find(records_.begin(), records_.end(), *rec) == records_.end()) records_.push_back(*rec);
}

std::uint64_t AcceptorHost::top_record() const {
  std::uint64_t top = 0;
  for (const auto& r : records_) top = std::max(top, r.version);
  return top;
}

// An answer that saw a configuration above every record found (and above
// ours): a member removed and added again answers blank, having forgotten,
// so the records of that configuration are still to be heard, and counting
// that member in an older one by its id would count one that no longer
// holds that one's values.
bool AcceptorHost::seen_beyond_records() const {
  if (config_.plant.recover_one_config) return false;
  const std::uint64_t top = std::max(config_.topology.version(), top_record());
  for (const auto& [id, m] : answers_)
    if (m.config_seen.version > top) return true;
  return false;
}

std::vector<Topology> AcceptorHost::needed() const {
  const std::uint64_t top = top_record();
  // (A node that knows a configuration newer than every record found has
  // state; recovering nodes start from `--members`, version 1.)
  if (records_.empty() || config_.plant.recover_one_config || top < config_.topology.version())
    return {config_.topology};
  // A settled record was fenced and caught up: it alone is needed. An
  // unsettled copy of that version is a laggard's, or a change that lost.
  for (const auto& r : records_)
    if (r.version == top && r.settled) return {r.topology()};
  std::vector<Topology> out;
  for (const auto& r : records_) {
    if (r.version != top) continue;
    out.push_back(r.topology());
    if (auto p = r.previous()) out.push_back(*p);
  }
  return out;
}

std::size_t AcceptorHost::answered(const Topology& t) const {
  std::size_t n = 0;
  for (const auto& id : counted_) n += t.contains(id);
  return n;
}

bool AcceptorHost::recovered() const {
  if (seen_beyond_records()) return false;
  for (const auto& t : needed()) {
    // A lone member's votes were counted only by its own proposer.
    if (t.size() == 1 && t.contains(config_.self)) continue;
    if (answered(t) < quorum::recovery_threshold(t.size())) return false;
  }
  return true;
}

// The highest configuration the answers show committed: a settled record's,
// else the one an unsettled record was changed from (a change starts only
// from a committed, settled record).
Topology AcceptorHost::recovered_config() const {
  std::optional<Topology> best;
  for (const auto& r : records_) {
    std::optional<Topology> t = r.settled ? std::optional<Topology>(r.topology()) : r.previous();
    if (t && (!best || t->version() > best->version())) best = t;
  }
  if (!best || best->version() <= config_.topology.version()) return config_.topology;
  return *best;
}

std::vector<std::pair<NodeId, QRecoverState>> AcceptorHost::answers_due() {
  std::vector<std::pair<NodeId, QRecoverState>> out;
  if (!ready_) return out;
  if (config_.plant.no_late_answers || removed_) owed_.clear();  // removed: nothing to vouch for
  for (const auto& [id, nonce] : std::exchange(owed_, {}))
    out.emplace_back(id, QRecoverState{nonce, false, acceptor_.export_state(), acceptor_.config_seen()});
  return out;
}

void AcceptorHost::tick(Time now) {
  if (disk_error_.empty() || now < next_retry_) return;
  next_retry_ = now + config_.retry_interval;
  persist();
}

bool AcceptorHost::set_note(const std::string& name, const std::string& value) {
  auto it = notes_.find(name);
  if (it != notes_.end() && it->second == value) return disk_error_.empty();
  notes_[name] = value;
  return persist();
}

std::optional<std::string> AcceptorHost::note(const std::string& name) const {
  auto it = notes_.find(name);
  if (it == notes_.end()) return std::nullopt;
  return it->second;
}

std::string AcceptorHost::progress(Time now) const {
  if (ready_) {
    if (!disk_error_.empty()) return "not voting: the data dir cannot be written: " + disk_error_;
    return store_ ? "voting (state durable in the data dir)" : "voting (state in memory only)";
  }
  if (waiting(now))
    return fmt::format("recovering: waiting {} ms more before asking peers (votes of an earlier life must "
                       "have landed or expired)",
                       to_ms(config_.recovery_wait - (now - born_)));
  std::vector<NodeId> recovering, holding;
  for (const auto& [id, answer] : latest_) {
    if (answer == Answer::recovering) recovering.push_back(id);
    if (answer == Answer::holding) holding.push_back(id);
  }
  std::string held;
  if (other_list_)
    held = fmt::format("; no bootstrap in this life: {} of this cluster runs on another member list", *other_list_);
  std::vector<std::string> per;
  for (const auto& t : needed())
    if (t.version() > 1 || !records_.empty())
      per.push_back(fmt::format("configuration {}: {} of {}", t.version(), answered(t),
                                quorum::recovery_threshold(t.size())));
  std::string configs = per.empty() ? std::string() : fmt::format(" ({})", fmt::join(per, "; "));
  return fmt::format("recovering: {} of {} ready members answered [{}]{}; recovering too [{}]; holding values [{}]{}",
                     counted_.size(), quorum::recovery_threshold(config_.topology.size()), fmt::join(counted_, ","),
                     configs, fmt::join(recovering, ","), fmt::join(holding, ","), held);
}

bool AcceptorHost::waiting(Time now) const {
  return !config_.plant.skip_recovery_wait && now - born_ < config_.recovery_wait;
}

std::vector<std::string> AcceptorHost::take_events() { return std::exchange(events_, {}); }

bool AcceptorHost::persist() {
  if (!store_) return true;
  std::string why;
  if (store_->save(snapshot(), why)) {
    if (!disk_error_.empty()) events_.push_back("+disk-ok: acceptor state saved again; voting");
    disk_error_.clear();
    return true;
  }
  if (why.empty()) why = "save failed";
  if (disk_error_ != why) events_.push_back("+disk-fault: not voting until the data dir can be written: " + why);
  disk_error_ = why;
  return false;
}

// The configuration tag seen travels as a note, so a data dir of an older
// build loads (it has none: nothing seen) and the file format stays.
DurableState AcceptorHost::snapshot() const {
  DurableState d{acceptor_.export_state(), notes_};
  if (removed_) d.notes[kRemovedNote] = "1";
  if (config_.topology.version() > 1) d.notes[kConfigNote] = encode(ConfigRecord::of(config_.topology, true));
  const ConfigTag& seen = acceptor_.config_seen();
  if (seen.version > 0) d.notes[kConfigSeenNote] = fmt::format("{}:{}", seen.version, seen.digest);
  return d;
}

ConfigTag parse_config_tag(const std::string& text) {
  ConfigTag t;
  auto colon = text.find(':');
  if (colon == std::string::npos) return t;
  std::string version = text.substr(0, colon), digest = text.substr(colon + 1);
  auto [p1, e1] = std::from_chars(version.data(), version.data() + version.size(), t.version);
  auto [p2, e2] = std::from_chars(digest.data(), digest.data() + digest.size(), t.digest);
  if (e1 != std::errc{} || e2 != std::errc{} || p1 != version.data() + version.size() ||
      p2 != digest.data() + digest.size())
    return ConfigTag{};
  return t;
}

void AcceptorHost::become_ready(const std::string& how) {
  Topology t = recovered_config();
  if (t.version() > config_.topology.version()) {
    // Removed while its state was lost (in no configuration recovery waited
    // for, so the removal is settled): it keeps nothing, as a removed
    // member that heard of it does.
    bool member = false;
    for (const auto& c : needed()) member = member || c.contains(config_.self);
    config_.topology = t;
    if (!member) forget();
  }
  // Also a configuration adopted while recovering (kept in memory until now).
  if (config_.topology.version() > 1) acceptor_.adopt_config_seen(tag_of(config_.topology));
  ready_ = true;
  events_.push_back("+quorum-ready: " + how);
  persist();  // a failure leaves us ready but not voting until a retry succeeds
}

}  // namespace rg::grid
