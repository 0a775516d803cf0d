#pragma once
// The stable event names of role changes and failover outcomes, and the
// hook names: operators' scripts, the event log, the chaos checker and the
// tests match on them, so each is spelled once, here.
#include <array>

namespace rg::agent::event {

inline constexpr const char* promoted = "+promoted";          // became master by a failover or claim
inline constexpr const char* demoted = "+demoted";            // a newer master exists
inline constexpr const char* lease_lost = "+lease-lost";      // no renewal committed within the lease
inline constexpr const char* handed_back = "+handed-back";    // claim 3: the role went back to the old master
inline constexpr const char* vacated = "+vacated";            // claim 4: too few acknowledged the broadcast
inline constexpr const char* resumed = "+resumed";            // FIG. 3: the table still named this node
inline constexpr const char* switchover_out = "+switchover-out";
inline constexpr const char* shutdown = "+shutdown";
inline constexpr const char* failover_aborted = "+failover-aborted";
inline constexpr const char* failover_yielded = "+failover-yielded";  // another node holds the reservation
inline constexpr const char* replica = "+replica";
inline constexpr const char* data = "+data";
inline constexpr const char* witness = "+witness";

}  // namespace rg::agent::event

// The hooks an operator attaches (hooks/<name>, ROLEGRID_HOOK): one per
// role, and the failover operation with its undo.
namespace rg::agent::hook {

inline constexpr const char* prepare = "prepare";  // FIG. 2's failover operation (claim 5 aborts it)
inline constexpr const char* abort = "abort";      // undoes a prepare whose failover failed
inline constexpr const char* master = "master";
inline constexpr const char* replica = "replica";
inline constexpr const char* data = "data";
inline constexpr std::array<const char*, 5> all = {prepare, master, replica, data, abort};

}  // namespace rg::agent::hook
