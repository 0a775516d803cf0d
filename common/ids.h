#pragma once
// Names of things in a cluster: node ids, incarnations, endpoints, and the
// topology (the member configuration every node must agree on).
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
// A member's stable index in the cluster's configuration (its position in
// the sorted list of version 1, a fresh one for a member added later); the
// same on every node whose topology agrees, so it stands for the node id on
// the wire.
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

// A cluster's members: one configuration of them (issue 14: members are
// changed one at a time, each change a new version). Version 1 is a
// `--members` list as given at the first start: the ids sorted, each
// indexed by its position. A later version keeps every remaining member's
// index and gives an added member a new one, never reused, so a ballot or
// a write version's origin never names two members.
class Topology {
 public:
  struct Member {
    NodeId id;
    MemberIndex index = 0;
    bool operator==(const Member&) const = default;
  };

  Topology() = default;
  // Version 1. Members are sorted and must be unique, valid ids; throws
  // std::invalid_argument.
  explicit Topology(std::vector<NodeId> members);
  // Any version, with the members' stable indices (unique, each below 255).
  // Throws std::invalid_argument.
  Topology(std::uint64_t version, std::vector<Member> members);

  const std::vector<NodeId>& members() const { return members_; }
  std::size_t size() const { return members_.size(); }
  std::size_t quorum() const { return quorum::majority(members_.size()); }
  std::optional<MemberIndex> index_of(std::string_view id) const;
  bool contains(std::string_view id) const { return index_of(id).has_value(); }
  std::uint64_t version() const { return version_; }
  // The members with their indices, sorted by id.
  std::vector<Member> indexed() const;
  // Same on every node with the same configuration: carried in heartbeats
  // so a node whose config disagrees is refused, and in register messages
  // (with the version) so that an acceptor tells two configurations of one
  // version apart. Version 1's is the same as before versions existed.
  std::uint64_t fingerprint() const { return fingerprint_; }
  bool operator==(const Topology& o) const {
    return version_ == o.version_ && members_ == o.members_ && indices_ == o.indices_;
  }

 private:
  void check_and_sort(std::vector<Member>& members) const;
  std::uint64_t digest() const;

  std::uint64_t version_ = 0;
  std::vector<NodeId> members_;        // sorted
  std::vector<MemberIndex> indices_;  // indices_[i] is members_[i]'s
  std::uint64_t fingerprint_ = 0;
};

// Splits "a,b,c" into trimmed, non-empty parts.
std::vector<std::string> split_list(std::string_view text);

}  // namespace rg
