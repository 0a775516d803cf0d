#include "programs/node_options.h"

#include "programs/admin_client.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace rg::tools {

namespace {

Endpoint endpoint_or_throw(const std::string& opt, const std::string& text) {
  std::string why;
  auto ep = parse_endpoint(text, &why);
  if (!ep) throw std::invalid_argument(fmt::format("{}: {}", opt, why));
  return *ep;
}

Duration duration_or_throw(const std::string& opt, const std::string& text) {
  auto d = grid::parse_duration(text);
  if (!d) throw std::invalid_argument(fmt::format("{}: '{}' is not a duration (e.g. 100ms, 1.5s)", opt, text));
  return *d;
}

// Option values as text, before they are checked and converted.
struct RawOptions {
  std::string members, listen, admin, multicast, seeds, secret_file, accept_secret_file;
  std::string heartbeat = "100ms", failure = "1000ms", probe = "250ms", anti_entropy = "5s";
  std::string hook_timeout = "10s", failover_timeout = "5s", broadcast_timeout = "500ms", failover_backoff = "2s",
              eviction_delay = "5s", prefer, http, watchdog_mode;
};

void define_grid_options(CLI::App& app, grid::NodeConfig& c, RawOptions& r) {
  app.add_option("--node", c.node, "this node's id, [a-z0-9-]{1,32}")/*required*/;
  app.add_option("--members", r.members, "ids of every member of the cluster, comma-separated (the static "
                 "topology; quorum is a majority of it)")/*required*/;
  app.add_option("--listen", r.listen, "HOST:PORT for peer traffic, UDP and TCP (numeric IPv4)")/*required*/;
  app.add_option("--admin", r.admin, "HOST:PORT of the admin port rolegridctl talks to")/*required*/;
  app.add_option("--multicast", r.multicast, "GROUP:PORT: discover and replicate over UDP multicast "
                 "(TTL 1, sent on the --listen interface)");
  app.add_option("--seeds", r.seeds, "HOST:PORT,...: listen addresses of other members, for unicast mode "
                 "(no multicast)");
  app.add_option("--secret-file", r.secret_file, "file holding the cluster secret (base64 of 32+ random bytes, "
                 "mode 600; make one with 'rolegrid keygen FILE'); every datagram and frame is encrypted and "
                 "authenticated with keys derived from it")/*required*/;
  app.add_option("--accept-secret-file", r.accept_secret_file, "a second secret also accepted (never used to "
                 "send): the other one during a rotation (README, Security)");
  app.add_option("--cluster", c.cluster, "cluster name; nodes of different clusters ignore each other")
      ->capture_default_str();
  app.add_option("--heartbeat-interval", r.heartbeat, "how often a node announces itself")->capture_default_str();
  app.add_option("--failure-timeout", r.failure, "silence after which a member is suspected; it is failed "
                 "once a direct and an indirect probe also fail")->capture_default_str();
  app.add_option("--probe-timeout", r.probe, "how long a probe may take")->capture_default_str();
  app.add_option("--anti-entropy-interval", r.anti_entropy, "how often to compare region digests with "
                 "one other member")->capture_default_str();
  app.add_option("--rcvbuf", c.multicast_rcvbuf, "UDP receive buffer to ask the kernel for, bytes "
                 "(status shows what it granted)")->capture_default_str();
  app.add_option("--log-level", c.log_level, "trace, debug, info, warn, error")->capture_default_str();
}

void define_agent_options(CLI::App& app, agent::AgentOptions& ag, RawOptions& r) {
  app.add_option("--hook-dir", ag.hook_dir, "directory with the role-change hooks: executables named prepare, "
                 "master, replica, data, abort (a missing one is skipped)");
  app.add_option("--hook-timeout", r.hook_timeout, "time limit of every hook but prepare")->capture_default_str();
  app.add_flag("--witness", ag.witness, "vote and hold the role table, never take a role (2 nodes + a witness "
               "fail over safely)");
  app.add_option("--failover-timeout", r.failover_timeout, "time limit of the prepare hook (the failover "
                 "operation)")->capture_default_str();
  app.add_option("--broadcast-timeout", r.broadcast_timeout, "how long a new master waits for a quorum to "
                 "acknowledge it before it vacates the role")->capture_default_str();
  app.add_option("--failover-backoff", r.failover_backoff, "wait after a failover attempt before another for "
                 "the same epoch")->capture_default_str();
  app.add_option("--eviction-delay", r.eviction_delay, "how long a failed replica keeps its place in the role "
                 "table")->capture_default_str();
  app.add_option("--prefer-replica", r.prefer, "node ids the master prefers as replica, in order, comma-separated");
  app.add_option("--event-log", ag.event_log, "append role changes, hook runs and lease bounds to this file as "
                 "JSON lines (monotonic timestamps)");
  app.add_option("--http", r.http, "HOST:PORT to serve GET /metrics (Prometheus) and /status (JSON) on; "
                 "off unless given");
  app.add_option("--watchdog", ag.watchdog, "watchdog device armed while this node is master (e.g. "
                 "/dev/watchdog; fake:FILE logs to FILE, for tests)");
  app.add_option("--watchdog-mode", r.watchdog_mode, "off, automatic (use the watchdog if it works) or required "
                 "(never act as master without it); default automatic with --watchdog, else off");
}

// The durable state and test switches; listed last in --help.
void define_state_options(CLI::App& app, grid::NodeConfig& c) {
  app.add_option("--data-dir", c.data_dir, "directory for this node's durable state: the quorum register's "
                 "promises and accepted values, its role and highest epoch; fsync'd before every vote "
                 "(required unless --in-memory)");
  app.add_flag("--in-memory", c.in_memory, "keep that state in memory only: a restarted node recovers it from "
               "its peers, and a full cluster restart forgets the role table and restarts epochs at 1");
  app.add_flag("--join", c.join, "this node is being added to a running cluster (after `rolegridctl member "
               "add`): refuse a data dir that holds state, never start a new cluster");
  app.add_flag("--enable-fault-injection", c.fault_injection, "accept `rolegridctl fault ...` commands that "
               "drop or delay this node's messages (for tests; refused otherwise)");
}

// Parses argv into the app; true when --help or --version was printed.
bool parse_argv(CLI::App& app, int argc, const char* const* argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return true;
  } catch (const CLI::CallForVersion&) {
    std::cout << "rolegrid 0.1.0\n";
    return true;
  } catch (const CLI::ConfigError& e) {
    // CLI11 words an unknown key as "INI was not able to parse KEY".
    std::string what = e.what(), prefix = "INI was not able to parse ";
    if (what.starts_with(prefix))
      throw std::invalid_argument(fmt::format("--config: unknown option '{}'", what.substr(prefix.size())));
    throw std::invalid_argument(fmt::format("--config: {}", what));
  } catch (const CLI::ParseError& e) {
    throw std::invalid_argument(e.what());
  }
  return false;
}

void apply_grid_options(grid::NodeConfig& c, const RawOptions& r) {
  if (c.data_dir.empty() == !c.in_memory)
    throw std::invalid_argument(c.in_memory ? "--data-dir and --in-memory exclude each other"
                                            : "--data-dir is required (or --in-memory to keep no state on disk)");
  c.members = split_list(r.members);
  c.listen = endpoint_or_throw("--listen", r.listen);
  c.admin = endpoint_or_throw("--admin", r.admin);
  if (!r.multicast.empty()) c.multicast = endpoint_or_throw("--multicast", r.multicast);
  for (const auto& s : split_list(r.seeds)) c.seeds.push_back(endpoint_or_throw("--seeds", s));
  c.secrets.clear();
  for (const auto& [opt, path] : {std::pair{"--secret-file", r.secret_file}, {"--accept-secret-file", r.accept_secret_file}}) {
    if (path.empty()) continue;
    try {
      c.secrets.push_back(read_secret_file(path));
    } catch (const std::exception& e) {
      throw std::invalid_argument(fmt::format("{}: {}", opt, e.what()));
    }
  }
  c.heartbeat_interval = duration_or_throw("--heartbeat-interval", r.heartbeat);
  c.failure_timeout = duration_or_throw("--failure-timeout", r.failure);
  c.probe_timeout = duration_or_throw("--probe-timeout", r.probe);
  c.anti_entropy_interval = duration_or_throw("--anti-entropy-interval", r.anti_entropy);
}

void apply_agent_options(agent::AgentOptions& ag, const grid::NodeConfig& c, const RawOptions& r, bool http_given) {
  ag.hook_timeout = duration_or_throw("--hook-timeout", r.hook_timeout);
  ag.failover_timeout = duration_or_throw("--failover-timeout", r.failover_timeout);
  ag.broadcast_timeout = duration_or_throw("--broadcast-timeout", r.broadcast_timeout);
  ag.failover_backoff = duration_or_throw("--failover-backoff", r.failover_backoff);
  ag.eviction_delay = duration_or_throw("--eviction-delay", r.eviction_delay);
  if (http_given || !r.http.empty()) {
    ag.http = endpoint_or_throw("--http", r.http);
    if (*ag.http == c.listen || *ag.http == c.admin)
      throw std::invalid_argument(fmt::format("--http: {} is already the --listen or --admin address", r.http));
  }
  if (r.watchdog_mode.empty()) {
    ag.watchdog_mode = ag.watchdog.empty() ? agent::WatchdogMode::off : agent::WatchdogMode::automatic;
  } else {
    auto m = agent::parse_watchdog_mode(r.watchdog_mode);
    if (!m) throw std::invalid_argument(fmt::format("--watchdog-mode: '{}' is not off, automatic or required",
                                                    r.watchdog_mode));
    ag.watchdog_mode = *m;
    if (*m != agent::WatchdogMode::off && ag.watchdog.empty())
      throw std::invalid_argument(fmt::format("--watchdog-mode {} needs --watchdog DEVICE", r.watchdog_mode));
  }
  ag.preferred_replicas = split_list(r.prefer);
  for (const auto& p : ag.preferred_replicas)
    if (std::find(c.members.begin(), c.members.end(), p) == c.members.end())
      throw std::invalid_argument(fmt::format("--prefer-replica: '{}' is not in --members", p));
}

}  // namespace

NodeOptions parse_node_options(int argc, const char* const* argv) {
  NodeOptions out;
  RawOptions raw;
  CLI::App app{"rolegrid: one node of a rolegrid cluster (replicated in-memory grid member)"};
  app.set_config("--config", "", "read options from a TOML file whose keys are the long option names; "
                 "options given on the command line win");
  // A misspelt key in a config file would otherwise be dropped in silence.
  app.allow_config_extras(CLI::config_extras_mode::error);
  define_grid_options(app, out.config, raw);
  define_agent_options(app, out.agent, raw);
  define_state_options(app, out.config);
  app.set_version_flag("--version", "rolegrid 0.1.0");
  if (parse_argv(app, argc, argv)) {
    out.exit_now = true;
    return out;
  }
  // Checked here rather than by CLI11, so an unknown or misspelt option is
  // reported before the required ones it may have hidden.
  for (const auto* name : {"--node", "--members", "--listen", "--admin", "--secret-file"})
    if (app.count(name) == 0) throw std::invalid_argument(fmt::format("{} is required", name));
  apply_grid_options(out.config, raw);
  apply_agent_options(out.agent, out.config, raw, app.count("--http") > 0);
  if (auto why = grid::validate(out.config); !why.empty()) throw std::invalid_argument(why);
  return out;
}

}  // namespace rg::tools
