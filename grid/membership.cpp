#include "grid/membership.h"

#include <cassert>
#include <stdexcept>

#include <fmt/format.h>

#include "common/log.h"

namespace rg::grid {

namespace {

std::string member_list(const Topology& topology) {
  std::string text = "[";
  for (const auto& id : topology.members()) {
    if (text.size() > 1) text += ',';
    text += id;
  }
  return text + "]";
}

}  // namespace

const char* to_string(MemberState s) {
  switch (s) {
    case MemberState::unknown: return "unknown";
    case MemberState::alive: return "alive";
    case MemberState::suspected: return "suspected";
    case MemberState::failed: return "failed";
    case MemberState::left: return "left";
  }
  return "?";
}

const char* to_string(MemberEvent e) {
  switch (e) {
    case MemberEvent::joined: return "joined";
    case MemberEvent::suspected: return "suspected";
    case MemberEvent::failed: return "failed";
    case MemberEvent::restored: return "restored";
    case MemberEvent::left: return "left";
  }
  return "?";
}

Membership::Membership(Topology topology, NodeId self, Incarnation incarnation,
                       std::string self_address, MembershipConfig config, Time now)
    : topology_(std::move(topology)),
      self_(std::move(self)),
      incarnation_(incarnation),
      self_address_(std::move(self_address)),
      config_(config),
      last_tick_(now) {
  if (!topology_.contains(self_))
    throw std::invalid_argument(
        fmt::format("node id {} is not in the members {}", self_, member_list(topology_)));
  for (const auto& id : topology_.members()) {
    if (id == self_) continue;
    MemberInfo m;
    m.id = id;
    members_.emplace(id, std::move(m));
  }
  check_invariants();
}

// --- inputs ---------------------------------------------------------------

Heard Membership::on_heard(const NodeId& from, Incarnation incarnation, const std::string& address,
                           std::uint64_t config_version, std::uint64_t topology_fingerprint, Time now,
                           MembershipOutput& out) {
  if (from == self_) {
    if (incarnation == incarnation_) return Heard::self;
    return refuse(Heard::self_duplicate, address,
                  fmt::format("node id {} is already live here at {} (incarnation {}); refusing a "
                              "second process at {} (incarnation {})",
                              self_, self_address_, incarnation_, address, incarnation),
                  out);
  }
  auto it = members_.find(from);
  const bool same_version = config_version == topology_.version();
  if (it == members_.end() && !same_version) return Heard::other_config;
  if (it == members_.end())
    return refuse(Heard::not_a_member, address,
                  fmt::format("node id {} is not in this cluster's members {}", from,
                              member_list(topology_)),
                  out);
  if (same_version && topology_fingerprint != topology_.fingerprint())
    return refuse(Heard::wrong_topology, address,
                  fmt::format("node id {}: its member list differs from this cluster's {}", from,
                              member_list(topology_)),
                  out);

  MemberInfo& m = it->second;
  if (m.state == MemberState::unknown) {
    m.incarnation = incarnation;
    m.address = address;
    m.alive_since = now;
    note_heard(m, now);
    become_alive(m, MemberEvent::joined, now, out);
    check_invariants();
    return Heard::accepted;
  }
  // Checked before staleness: an older incarnation still talking from another
  // address is a second live process too, and it should be told so.
  if (address != m.address && held_live_by_known_process(m, now))
    return refuse(Heard::duplicate, address,
                  fmt::format("node id {} is already live at {} (incarnation {}); refusing a "
                              "second process at {} (incarnation {})",
                              from, m.address, m.incarnation, address, incarnation),
                  out);
  if (incarnation < m.incarnation) return Heard::stale;

  if (incarnation > m.incarnation || address != m.address) {
    // A new process (restart or move): whatever we thought of the old one no
    // longer applies, including a pending suspicion.
    m.incarnation = incarnation;
    m.address = address;
    m.alive_since = now;
    note_heard(m, now);
    become_alive(m, MemberEvent::joined, now, out);
    check_invariants();
    return Heard::accepted;
  }
  // A process that left never speaks again: a message of the same
  // incarnation after its leave was sent before it (a late heartbeat).
  if (m.state == MemberState::left) return Heard::stale;
  note_heard(m, now);
  switch (m.state) {
    case MemberState::suspected:
    case MemberState::failed: become_alive(m, MemberEvent::restored, now, out); break;
    case MemberState::left:
    case MemberState::alive:
    case MemberState::unknown: break;
  }
  check_invariants();
  return Heard::accepted;
}

void Membership::adopt(Topology newer, Time now, MembershipOutput& out) {
  if (newer.version() <= topology_.version()) return;
  for (auto it = members_.begin(); it != members_.end();) {
    if (newer.contains(it->first)) {
      ++it;
      continue;
    }
    MemberInfo& m = it->second;
    if (m.state != MemberState::unknown && m.state != MemberState::left) become_left(m, now, out);
    suspicions_.erase(m.id);
    really_heard_.erase(m.id);
    heard_in_tilt_.erase(m.id);
    it = members_.erase(it);
  }
  for (const auto& id : newer.members())
    if (id != self_ && !members_.contains(id)) members_.emplace(id, MemberInfo{id, MemberState::unknown, 0, {}, {}, {}, {}});
  topology_ = std::move(newer);
  check_invariants();
}

void Membership::on_leave(const NodeId& from, Incarnation incarnation, Time now,
                          MembershipOutput& out) {
  auto it = members_.find(from);
  if (it == members_.end()) return;
  MemberInfo& m = it->second;
  // A member never heard has no `joined` for a `left` to close.
  if (m.state == MemberState::unknown || incarnation < m.incarnation) return;
  if (m.state == MemberState::left && incarnation == m.incarnation) return;
  m.incarnation = incarnation;
  become_left(m, now, out);
  check_invariants();
}

void Membership::on_probe_result(std::uint64_t nonce, bool reached, Time now,
                                 MembershipOutput& out) {
  auto find_suspicion = [&] {
    for (auto it = suspicions_.begin(); it != suspicions_.end(); ++it)
      if (nonce != 0 && (it->second.direct_nonce == nonce || it->second.indirect_nonce == nonce))
        return it;
    return suspicions_.end();
  };
  if (find_suspicion() == suspicions_.end()) return;
  if (!reached) {
    // A failure report that comes out of a stall says nothing about the
    // target; TILT drops the suspicion (and this nonce with it).
    detect_stall(now, out);
  }
  auto it = find_suspicion();
  if (it == suspicions_.end()) return;
  MemberInfo& m = members_.at(it->first);
  if (reached) {
    note_heard(m, now);
    become_alive(m, MemberEvent::restored, now, out);
    return;
  }
  Suspicion& s = it->second;
  (s.direct_nonce == nonce ? s.direct_nonce : s.indirect_nonce) = 0;
  if (--s.pending == 0) become_failed(m, now, out);
  check_invariants();
}

void Membership::tick(Time now, MembershipOutput& out) {
  detect_stall(now, out);
  if (in_tilt_ && tilt_can_end(now)) {
    in_tilt_ = false;
    heard_in_tilt_.clear();
    log::info("-tilt after {} ms", to_ms(now - tilt_began_));
  }
  for (auto& [id, m] : members_) {
    if (m.state == MemberState::suspected && now >= suspicions_.at(id).deadline)
      become_failed(m, now, out);
    else if (m.state == MemberState::alive && now - m.last_heard > config_.failure_timeout)
      become_suspected(m, now, out);
  }
  check_invariants();
}

// --- queries --------------------------------------------------------------

const MemberInfo* Membership::find(const NodeId& id) const {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second;
}

std::vector<NodeId> Membership::alive() const {
  std::vector<NodeId> ids;
  for (const auto& [id, m] : members_)
    if (m.state == MemberState::alive || m.state == MemberState::suspected) ids.push_back(id);
  return ids;
}

bool Membership::is_alive(const NodeId& id) const {
  const MemberInfo* m = find(id);
  return m && (m->state == MemberState::alive || m->state == MemberState::suspected);
}

// --- transitions ----------------------------------------------------------

void Membership::become_alive(MemberInfo& m, MemberEvent why, Time now, MembershipOutput& out) {
  assert(why == MemberEvent::joined || why == MemberEvent::restored);
  assert(why == MemberEvent::joined || m.state == MemberState::suspected ||
         m.state == MemberState::failed);
  suspicions_.erase(m.id);
  m.state = MemberState::alive;
  m.state_since = now;
  emit(m, why, out);
}

void Membership::become_suspected(MemberInfo& m, Time now, MembershipOutput& out) {
  assert(m.state == MemberState::alive);
  Suspicion s;
  s.deadline = now + config_.probe_timeout;
  s.direct_nonce = next_nonce_++;
  s.pending = 1;
  out.probes.push_back(ProbeOrder{s.direct_nonce, m.id, m.address, {}, {}});
  if (const MemberInfo* relay = pick_relay(m.id)) {
    s.indirect_nonce = next_nonce_++;
    s.pending = 2;
    out.probes.push_back(ProbeOrder{s.indirect_nonce, m.id, m.address, relay->id, relay->address});
  }
  suspicions_[m.id] = s;
  m.state = MemberState::suspected;
  m.state_since = now;
  emit(m, MemberEvent::suspected, out);
}

void Membership::become_failed(MemberInfo& m, Time now, MembershipOutput& out) {
  assert(m.state == MemberState::suspected);
  suspicions_.erase(m.id);
  m.state = MemberState::failed;
  m.state_since = now;
  emit(m, MemberEvent::failed, out);
}

void Membership::become_left(MemberInfo& m, Time now, MembershipOutput& out) {
  assert(m.state != MemberState::unknown);
  suspicions_.erase(m.id);
  m.state = MemberState::left;
  m.state_since = now;
  emit(m, MemberEvent::left, out);
}

void Membership::emit(const MemberInfo& m, MemberEvent kind, MembershipOutput& out) const {
  out.events.push_back(MembershipEvent{kind, m.id, m.incarnation, m.address});
  log::debug("+{} {} incarnation {} at {}", to_string(kind), m.id, m.incarnation, m.address);
}

// --- TILT -----------------------------------------------------------------

void Membership::detect_stall(Time now, MembershipOutput& out) {
  bool stalled = now - last_tick_ > config_.stall_threshold;
  if (now > last_tick_) last_tick_ = now;
  if (stalled) enter_tilt(now, out);
}

void Membership::enter_tilt(Time now, MembershipOutput& out) {
  in_tilt_ = true;
  ++tilt_count_;
  tilt_began_ = now;
  heard_in_tilt_.clear();
  for (auto& [id, m] : members_) {
    if (m.state == MemberState::suspected) become_alive(m, MemberEvent::restored, now, out);
    // Silence measured across our own stall is not evidence against anyone.
    if (m.state == MemberState::alive) m.last_heard = now;
  }
  log::info("+tilt: this node stalled; not accusing anyone until heard from (tilt #{})",
            tilt_count_);
}

bool Membership::tilt_can_end(Time now) const {
  if (now - tilt_began_ >= config_.failure_timeout) return true;
  for (const auto& [id, m] : members_)
    if (m.state == MemberState::alive && !heard_in_tilt_.contains(id)) return false;
  return true;
}

// --- helpers --------------------------------------------------------------

void Membership::note_heard(MemberInfo& m, Time now) {
  m.last_heard = now;
  really_heard_[m.id] = now;
  if (in_tilt_) heard_in_tilt_.insert(m.id);
}

bool Membership::held_live_by_known_process(const MemberInfo& m, Time now) const {
  if (m.state != MemberState::alive && m.state != MemberState::suspected) return false;
  auto it = really_heard_.find(m.id);
  return it != really_heard_.end() && now - it->second <= config_.failure_timeout;
}

// The alive member heard most recently is the one most likely to reach the
// target; ties go to the smallest id so every run picks the same.
const MemberInfo* Membership::pick_relay(const NodeId& target) const {
  const MemberInfo* best = nullptr;
  for (const auto& [id, m] : members_) {
    if (id == target || m.state != MemberState::alive) continue;
    if (!best || m.last_heard > best->last_heard) best = &m;
  }
  return best;
}

Heard Membership::refuse(Heard why, const std::string& address, std::string reason,
                         MembershipOutput& out) const {
  log::debug("refusing {}: {}", address, reason);
  out.refusals.push_back(Refusal{address, std::move(reason)});
  return why;
}

void Membership::check_invariants() const {
#ifndef NDEBUG
  assert(members_.size() + (topology_.contains(self_) ? 1 : 0) == topology_.size());
  assert(!members_.contains(self_));
  for (const auto& [id, m] : members_) {
    assert(m.id == id);
    auto s = suspicions_.find(id);
    assert((m.state == MemberState::suspected) == (s != suspicions_.end()));
    if (s != suspicions_.end()) {
      int open = (s->second.direct_nonce != 0) + (s->second.indirect_nonce != 0);
      assert(s->second.pending == open && open >= 1);
    }
    assert(m.state != MemberState::unknown || m.incarnation == 0);
  }
  assert(in_tilt_ || heard_in_tilt_.empty());
#endif
}

}  // namespace rg::grid
