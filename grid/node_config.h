#pragma once
// Everything a node needs to start, already parsed and checked.
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"

namespace rg::grid {

struct NodeConfig {
  NodeId node;
  std::vector<NodeId> members;
  Endpoint listen;  // UDP and TCP, same port
  Endpoint admin;
  std::optional<Endpoint> multicast;  // discovery + replication group
  std::vector<Endpoint> seeds;        // unicast mode
  std::string cluster = "rolegrid";
  // Decoded secrets (common/keys.h): the first seals, every one opens; two
  // during a rotation.
  std::vector<std::string> secrets;
  Duration heartbeat_interval = milliseconds(100);
  Duration failure_timeout = milliseconds(1000);
  Duration probe_timeout = milliseconds(250);
  Duration anti_entropy_interval = milliseconds(5000);
  std::size_t multicast_rcvbuf = 4 * 1024 * 1024;
  std::string log_level = "info";
  bool fault_injection = false;  // accept `fault` admin commands (tests only)
  // Where the acceptor's state (and the agent's notes) is kept durable;
  // empty with in_memory: nothing survives the process (see README).
  std::string data_dir;
  bool in_memory = false;
  // Started to be added to a running cluster (after `rolegridctl member
  // add`): its data dir must hold no state, and it never bootstraps.
  bool join = false;
};

// Empty if the config can run; otherwise a one-line reason.
std::string validate(const NodeConfig& c);

// "250ms", "1s", "1.5s", "2m", or a plain number of milliseconds.
std::optional<Duration> parse_duration(std::string_view text);

}  // namespace rg::grid
