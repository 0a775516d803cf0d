#pragma once
// The rolegrid command line and config file (CLI11): every option, its
// default and its help text live here, so `rolegrid --help` and the config
// file keys never drift apart.
#include <string>
#include <vector>

#include "agent/agent_node.h"
#include "grid/node_config.h"

namespace rg::tools {

struct NodeOptions {
  grid::NodeConfig config;
  agent::AgentOptions agent;
  bool exit_now = false;  // --help or --version printed
  int exit_code = 0;
};

// Parses argv (and --config FILE); on a bad option or value throws
// std::invalid_argument with a one-line reason.
NodeOptions parse_node_options(int argc, const char* const* argv);

}  // namespace rg::tools
