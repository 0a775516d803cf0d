#pragma once
// Membership: who this node believes is alive, with their incarnations.
//
// A pure protocol core, driven by the node's Asio shell (or a simulator) on
// one thread: every input carries `now`, nothing here reads a clock, opens a
// socket or starts a timer. Outputs go into a MembershipOutput the caller
// drains: events for the layers above, probes to run, refusals to send.
//
// Failure detection (DESIGN.md "Membership"): a member silent for
// failure_timeout is suspected; it is confirmed failed only when a direct
// probe and one indirect probe (through another alive member) both fail or
// time out after probe_timeout. Hearing from it, or any probe succeeding,
// restores it. If tick() sees that this node itself stalled (the gap between
// ticks exceeds stall_threshold: it was paused or starved of CPU) it enters
// TILT: every member gets a fresh failure_timeout from now and pending
// suspicions are dropped, so a slow node never evicts a healthy cluster.
//
// TILT is also entered when a failed probe result arrives after such a gap
// (an event loop may run its overdue probe timers before its tick timer).
//
// Events are emitted once per real state change: joined (first heard, a new
// incarnation, a move to another address, or back after leaving), suspected,
// failed, restored (heard or reached again with the same incarnation), left.
// Suspected members still count as alive in alive()/is_alive(): a suspicion
// is not a verdict, and treating it as one would move roles on one lost
// heartbeat's worth of doubt.
//
// Views need not agree between nodes; safety above never depends on them.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/clock.h"

namespace rg::grid {

struct MembershipConfig {
  Duration heartbeat_interval = milliseconds(100);
  Duration failure_timeout = milliseconds(1000);
  Duration probe_timeout = milliseconds(250);
  // A gap between two ticks longer than this means this node stalled.
  Duration stall_threshold = milliseconds(500);
};

enum class MemberState { unknown, alive, suspected, failed, left };
const char* to_string(MemberState s);

struct MemberInfo {
  NodeId id;
  MemberState state = MemberState::unknown;
  Incarnation incarnation = 0;
  std::string address;  // listen endpoint "host:port" as the member announced it
  Time last_heard{};
  Time state_since{};
  Time alive_since{};  // when the current incarnation was first heard
};

enum class MemberEvent { joined, suspected, failed, restored, left };
const char* to_string(MemberEvent e);

struct MembershipEvent {
  MemberEvent kind;
  NodeId id;
  Incarnation incarnation = 0;
  std::string address;
};

// Ask the shell to probe `target` (at `address`) directly (via empty) or
// through member `via`; the shell reports back with on_probe_result(nonce, ...).
struct ProbeOrder {
  std::uint64_t nonce = 0;
  NodeId target;
  std::string address;
  NodeId via;  // empty: direct
  std::string via_address;
};

// Ask the shell to tell the sender at `address` it is refused, and why.
struct Refusal {
  std::string address;
  std::string reason;
};

struct MembershipOutput {
  std::vector<MembershipEvent> events;
  std::vector<ProbeOrder> probes;
  std::vector<Refusal> refusals;
  void clear() { events.clear(); probes.clear(); refusals.clear(); }
};

// What on_heard() made of a message.
enum class Heard {
  accepted,        // from a known member; its state is now alive
  stale,           // from an older incarnation than the one we know: ignore it
  not_a_member,    // id not in the topology: refused (a Refusal was emitted)
  wrong_topology,  // its member list differs from ours at the same version: refused
  other_config,    // not a member of ours, at another configuration version: not refused, the
                   // shell exchanges configurations (one of us has not adopted the other's yet)
  duplicate,       // another live process already holds this id at another address: refused
  self,            // our own message (multicast loopback): ignore
  self_duplicate,  // someone else claims our id: refused
};

class Membership {
 public:
  // Throws std::invalid_argument if `self` is not in the topology.
  Membership(Topology topology, NodeId self, Incarnation incarnation, std::string self_address,
             MembershipConfig config, Time now);

  // Any authenticated message from `from` (heartbeat, data, ack...). For
  // messages that do not carry the sender's member-list fingerprint, pass ours.
  // A second process claiming a member's id from another address is refused
  // while the known process was heard within failure_timeout; once that one
  // is silent, failed or gone, the newcomer is taken as a restart or a move.
  Heard on_heard(const NodeId& from, Incarnation incarnation, const std::string& address,
                 std::uint64_t topology_fingerprint, Time now, MembershipOutput& out) {
    return on_heard(from, incarnation, address, topology_.version(), topology_fingerprint, now, out);
  }
  // The same, from a heartbeat that names the sender's configuration
  // version (issue 14). Between versions the fingerprints differ by design:
  // a member of ours is heard as usual whatever its version, anyone else
  // is `other_config`. Only the same version with another list is refused.
  Heard on_heard(const NodeId& from, Incarnation incarnation, const std::string& address,
                 std::uint64_t config_version, std::uint64_t topology_fingerprint, Time now,
                 MembershipOutput& out);
  // A committed configuration newer than ours: members it drops leave the
  // view (event `left` for those we knew running), members it adds start
  // unknown until heard. Self may be absent (removed: the node stops).
  void adopt(Topology newer, Time now, MembershipOutput& out);
  // `from` left gracefully (SIGTERM): state left at once, event `left`.
  void on_leave(const NodeId& from, Incarnation incarnation, Time now, MembershipOutput& out);
  // Result of a probe ordered earlier; unknown or late nonces are ignored.
  void on_probe_result(std::uint64_t nonce, bool reached, Time now, MembershipOutput& out);
  // Call at least every heartbeat_interval: suspicion, probe deadlines, TILT.
  void tick(Time now, MembershipOutput& out);

  const MemberInfo* find(const NodeId& id) const;
  const std::map<NodeId, MemberInfo>& members() const { return members_; }  // excludes self
  std::vector<NodeId> alive() const;  // alive members other than self, sorted
  bool is_alive(const NodeId& id) const;
  bool tilted() const { return tilt_count_ > 0 && in_tilt_; }
  std::uint64_t tilt_count() const { return tilt_count_; }
  const Topology& topology() const { return topology_; }
  const NodeId& self() const { return self_; }
  Incarnation incarnation() const { return incarnation_; }
  const MembershipConfig& config() const { return config_; }

 private:
  struct Suspicion {
    std::uint64_t direct_nonce = 0;    // 0 once answered
    std::uint64_t indirect_nonce = 0;  // 0: no other member to ask, or answered
    int pending = 0;                   // probes not yet answered
    Time deadline{};
  };
  // Every state change goes through one of these: each keeps suspicions_ in
  // step with the states and emits exactly one event.
  void become_alive(MemberInfo& m, MemberEvent why, Time now, MembershipOutput& out);
  void become_suspected(MemberInfo& m, Time now, MembershipOutput& out);
  void become_failed(MemberInfo& m, Time now, MembershipOutput& out);
  void become_left(MemberInfo& m, Time now, MembershipOutput& out);
  void emit(const MemberInfo& m, MemberEvent kind, MembershipOutput& out) const;

  void detect_stall(Time now, MembershipOutput& out);
  void enter_tilt(Time now, MembershipOutput& out);
  bool tilt_can_end(Time now) const;
  void note_heard(MemberInfo& m, Time now);
  bool held_live_by_known_process(const MemberInfo& m, Time now) const;
  const MemberInfo* pick_relay(const NodeId& target) const;
  Heard refuse(Heard why, const std::string& address, std::string reason, MembershipOutput& out) const;
  void check_invariants() const;

  Topology topology_;
  NodeId self_;
  Incarnation incarnation_;
  std::string self_address_;
  MembershipConfig config_;
  std::map<NodeId, MemberInfo> members_;
  std::map<NodeId, Suspicion> suspicions_;
  // When each member was really last heard or reached. MemberInfo::last_heard
  // is pushed forward by TILT to grant a fresh timeout; telling a live process
  // from a silent one (duplicate ids) needs the truth.
  std::map<NodeId, Time> really_heard_;
  std::uint64_t next_nonce_ = 1;
  Time last_tick_{};
  bool in_tilt_ = false;
  std::uint64_t tilt_count_ = 0;
  Time tilt_began_{};
  std::set<NodeId> heard_in_tilt_;  // alive members heard since tilt_began_
};

}  // namespace rg::grid
