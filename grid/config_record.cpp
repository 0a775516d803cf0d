// ConfigRecord: the configuration record of `cluster/members` and the
// single-member change rules (config_record.h).
#include "grid/config_record.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace rg::grid {

Topology ConfigRecord::topology() const {
  std::vector<Topology::Member> members;
  for (std::size_t i = 0; i < ids.size() && i < indices.size(); ++i) members.push_back({ids[i], indices[i]});
  return Topology(version, std::move(members));
}

std::optional<Topology> ConfigRecord::previous() const {
  if (version <= 1) return std::nullopt;
  auto members = topology().indexed();
  auto n = std::erase_if(members, [&](const Topology::Member& m) { return m.id == changed_id; });
  if (n != (changed_add ? 1u : 0u)) throw std::invalid_argument("the change does not match the members");
  if (!changed_add) members.push_back({changed_id, changed_index});
  return Topology(version - 1, std::move(members));  // checks the id and the index
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
    r.previous();
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
  MemberIndex index = add ? current.next_index : it->index;
  if (add) {
    if (!valid_node_id(id)) return why = fmt::format("'{}' is not a valid node id", id), std::nullopt;
    members.push_back({id, index});
  } else {
    members.erase(it);
  }
  ConfigRecord next = ConfigRecord::of(Topology(current.version + 1, members), false);
  next.next_index = std::max<MemberIndex>(next.next_index, static_cast<MemberIndex>(current.next_index + add));
  next.changed_id = id;
  next.changed_index = index;
  next.changed_add = add;
  return next;
}

}  // namespace rg::grid
