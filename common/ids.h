#pragma once
// Names of things in a cluster: node ids, incarnations, endpoints, and the
// static topology (the member list every node must agree on).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/quorum_math.h"

namespace rg {

using NodeId = std::string;
// Grows each time a node process starts; tells a restarted node from a slow one.
using Incarnation = std::uint64_t;
// Index of a node in the sorted member list; the same on every node whose
// topology agrees, so it can stand for the node id on the wire.
using MemberIndex = std::uint16_t;

// [a-z0-9-]{1,32}
bool valid_node_id(std::string_view id);

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string str() const;
  bool operator==(const Endpoint&) const = default;
  auto operator<=>(const Endpoint&) const = default;
};

// "host:port" with a numeric IPv4 host; nullopt (and a reason) on bad input.
std::optional<Endpoint> parse_endpoint(std::string_view text, std::string* why = nullptr);

// An epoch as text (fencing tokens: `fence`, `?epoch=`, `if-epoch`): a
// decimal from 1 to 2^63; nullopt otherwise.
std::optional<std::uint64_t> parse_epoch(std::string_view text);

class Topology {
 public:
  Topology() = default;
  // Members are sorted and must be unique, valid ids; throws std::invalid_argument.
  explicit Topology(std::vector<NodeId> members);

  const std::vector<NodeId>& members() const { return members_; }
  std::size_t size() const { return members_.size(); }
  std::size_t quorum() const { return quorum::majority(members_.size()); }
  std::optional<MemberIndex> index_of(std::string_view id) const;
  bool contains(std::string_view id) const { return index_of(id).has_value(); }
  const NodeId& at(MemberIndex i) const { return members_.at(i); }
  // Same on every node with the same member list; carried in heartbeats so a
  // node whose config disagrees is refused.
  std::uint64_t fingerprint() const { return fingerprint_; }

 private:
  std::vector<NodeId> members_;
  std::uint64_t fingerprint_ = 0;
};

// Splits "a,b,c" into trimmed, non-empty parts.
std::vector<std::string> split_list(std::string_view text);

}  // namespace rg
