#pragma once
// Health checks for load balancers and services (GET or HEAD on the HTTP
// port), and the fencing-token check behind `rolegridctl fence EPOCH`.
// Pure: the caller takes a snapshot of the node (HealthView) at the moment
// of the request, so the answers can be tested without sockets.
//
//   /master            200 while this node acts as master within its lease
//   /master?epoch=N    200 only if, in addition, it acts at exactly epoch N
//   /replica           200 while this node holds the replica role
//   /health            200 while this node is a member of a quorum: its
//                      acceptor votes and it sees a majority alive
// Anything else about the node answers 503, with the same JSON body (role,
// epoch, ...), so a probe that fails can still be read.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/http_server.h"
#include "common/ids.h"

namespace rg::agent {

struct HealthView {
  std::string node;
  std::string role;             // master, replica, data, witness
  std::string state;            // the agent's state
  bool acting_master = false;   // established and within its own lease bound
  std::uint64_t master_epoch = 0;  // the epoch it acts at (when acting_master)
  std::int64_t lease_remaining_ms = 0;
  std::uint64_t table_epoch = 0;   // the role table's epoch in this node's copy
  std::optional<std::string> master;  // who the table names, if anyone
  std::size_t alive = 0;        // members alive in this node's view, self included
  std::size_t quorum = 0;       // majority of the members
  bool acceptor_ready = false;  // its quorum acceptor votes
};

// True only while the node acts as master at exactly `epoch`.
bool fenced_at(const HealthView& v, std::uint64_t epoch);
// "" when fenced_at, else why not, in one line.
std::string not_fenced_reason(const HealthView& v, std::uint64_t epoch);

// The answer to a health-check path (with its query); nullopt if `target`
// is not one of the health paths.
std::optional<HttpAnswer> health_answer(std::string_view target, const HealthView& v);

// The JSON body every health answer carries.
std::string health_json(const HealthView& v);

}  // namespace rg::agent
