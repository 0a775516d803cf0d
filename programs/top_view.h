#pragma once
// rolegridctl top: a refreshing table of every member of a live cluster.
// One member (the one given with --node, or any other that answers) supplies
// the cluster view: the member list, each member's state as it sees it, the
// role table and the members' admin addresses (from their `nodes` entries).
// Every member is then asked for its own status and roles, all at once and
// each under a time limit, so a member that does not answer only costs one
// timeout and shows as unreachable.
#include <chrono>
#include <string>

namespace rg::tools {

struct TopOptions {
  std::string node;  // admin HOST:PORT asked first for the cluster view
  std::string cluster;
  std::string secret;
  std::chrono::milliseconds interval{1000};
  int iterations = 0;  // refreshes to show; 0: until interrupted
  std::chrono::milliseconds timeout{1000};  // per member and refresh
  bool json = false;  // one JSON object per refresh instead of the table
};

// Shows frames until done; returns the exit status (2 when no member
// answered the first refresh).
int run_top(const TopOptions& options);

}  // namespace rg::tools
