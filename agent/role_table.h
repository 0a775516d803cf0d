#pragma once
// The role table: who is master and replica, at which epoch. It lives in one
// quorum register (key "table" of quorum region "roles"), so master, replica
// and the epoch change together, atomically, by compare-and-set.
#include <cstdint>
#include <optional>
#include <string>

#include "common/codec.h"
#include "common/ids.h"
#include "grid/quorum.h"

namespace rg::agent {

inline constexpr const char* kRoleKey = "roles/table";
// The failover reservation: which node may run `prepare` for which failing
// master entry. A register of its own, so reserving never touches the role
// table (any write there would restart the failing master's lease).
inline constexpr const char* kFailoverKey = "roles/failover";

enum class Role : std::uint8_t { data = 0, replica = 1, master = 2, witness = 3 };
const char* to_string(Role r);

enum class Phase : std::uint8_t { designated = 0, established = 1 };
const char* to_string(Phase p);

struct MasterEntry {
  NodeId node;
  std::uint64_t epoch = 0;
  Phase phase = Phase::designated;
  std::int64_t lease_ms = 0;
  std::uint64_t renewal = 0;  // grows with every renewal: "renewed" = this moved
  bool operator==(const MasterEntry&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, node);
    rg::io(ar, epoch);
    rg::io(ar, phase);
    rg::io(ar, lease_ms);
    rg::io(ar, renewal);
  }
};

// One master entry, renewals aside: the same node, epoch and phase.
inline bool same_entry(const MasterEntry& a, const MasterEntry& b) {
  return a.node == b.node && a.epoch == b.epoch && a.phase == b.phase;
}

struct ReplicaEntry {
  NodeId node;
  std::uint64_t epoch = 0;  // the master epoch that appointed it
  bool operator==(const ReplicaEntry&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, node);
    rg::io(ar, epoch);
  }
};

struct RoleTable {
  std::optional<MasterEntry> master;  // nullopt: vacant
  std::optional<ReplicaEntry> replica;
  std::uint64_t epoch = 0;            // highest epoch ever used; survives a vacancy
  bool maintenance = false;           // no automatic failover while on
  std::string reason;                 // why the last change was made (for operators)
  bool operator==(const RoleTable&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, master);
    rg::io(ar, replica);
    rg::io(ar, epoch);
    rg::io(ar, maintenance);
    rg::io(ar, reason);
  }
};

// To and from the register: the lease tag names the master (holder, epoch,
// lease) so acceptors enforce the lease rule without knowing about roles.
grid::RegValue to_register(const RoleTable& t);
std::optional<RoleTable> from_register(const grid::RegValue& v);  // nullopt if undecodable

// One failover operation at a time: a node runs `prepare` only once the
// reservation names it for exactly the master entry it saw failing. It
// holds no lease; another node may take it over only after it has stayed
// the same for longer than a prepare can run.
struct FailoverReservation {
  NodeId candidate;
  MasterEntry failing;
  // Grows with each reservation the candidate writes, so a renewed one is
  // never mistaken for the same, stale value.
  std::uint64_t attempt = 0;
  bool operator==(const FailoverReservation&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, candidate);
    rg::io(ar, failing);
    rg::io(ar, attempt);
  }
};
grid::RegValue to_register(const FailoverReservation& r);
std::optional<FailoverReservation> reservation_from_register(const grid::RegValue& v);

}  // namespace rg::agent
