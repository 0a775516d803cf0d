#pragma once
// The value of the register key `cluster/members`: one configuration of the
// cluster's members (issue 14; DESIGN.md, "Changing the members"), and the
// single-member change rules. Plain data: MemberChange writes it, the
// acceptor host reads it while recovering, the shell adopts it.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "grid/quorum.h"

namespace rg::grid {

inline constexpr const char* kMembersKey = "cluster/members";

// Absent from the register: version 1, the `--members` list.
struct ConfigRecord {
  std::uint64_t version = 1;
  std::vector<NodeId> ids;              // sorted
  std::vector<MemberIndex> indices;     // indices[i] is ids[i]'s
  MemberIndex next_index = 0;           // the next added member's; never reused
  bool settled = true;                  // fenced and caught up: the next change may start
  // The change that made this version from the one before (empty at
  // version 1): a recovering acceptor that finds this version unsettled
  // must also hear from the members of the one before (previous()).
  NodeId changed_id;
  MemberIndex changed_index = 0;
  bool changed_add = false;
  bool operator==(const ConfigRecord&) const = default;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, version);
    rg::io(ar, ids);
    rg::io(ar, indices);
    rg::io(ar, next_index);
    rg::io(ar, settled);
    rg::io(ar, changed_id);
    rg::io(ar, changed_index);
    rg::io(ar, changed_add);
  }
  Topology topology() const;
  // The configuration this one was changed from; nullopt at version 1.
  std::optional<Topology> previous() const;
  static ConfigRecord of(const Topology& t, bool settled);
};

RegValue config_to_register(const ConfigRecord& r);
// nullopt: not a configuration record (malformed).
std::optional<ConfigRecord> config_from_register(const RegValue& v);

// `current` plus `id` (at next_index) or minus it, one version up and not
// settled; nullopt with `why` if the change is not one member (already
// a member, not one, the last one, indices run out).
std::optional<ConfigRecord> changed(const ConfigRecord& current, const NodeId& id, bool add, std::string& why);

}  // namespace rg::grid
