#include "tools/node_options.h"

#include "tools/admin_client.h"

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

}  // namespace

NodeOptions parse_node_options(int argc, const char* const* argv) {
  NodeOptions out;
  auto& c = out.config;
  CLI::App app{"rolegrid: one node of a rolegrid cluster (replicated in-memory grid member)"};
  app.set_config("--config", "", "read options from a TOML file whose keys are the long option names; "
                 "options given on the command line win");
  // A misspelt key in a config file would otherwise be dropped in silence.
  app.allow_config_extras(CLI::config_extras_mode::error);
  std::string members, listen, admin, multicast, seeds, secret_file;
  std::string heartbeat = "100ms", failure = "1000ms", probe = "250ms", anti_entropy = "5s";
  app.add_option("--node", c.node, "this node's id, [a-z0-9-]{1,32}")/*required*/;
  app.add_option("--members", members, "ids of every member of the cluster, comma-separated (the static "
                 "topology; quorum is a majority of it)")/*required*/;
  app.add_option("--listen", listen, "HOST:PORT for peer traffic, UDP and TCP (numeric IPv4)")/*required*/;
  app.add_option("--admin", admin, "HOST:PORT of the admin port rolegridctl talks to")/*required*/;
  app.add_option("--multicast", multicast, "GROUP:PORT: discover and replicate over UDP multicast "
                 "(TTL 1, sent on the --listen interface)");
  app.add_option("--seeds", seeds, "HOST:PORT,...: listen addresses of other members, for unicast mode "
                 "(no multicast)");
  app.add_option("--secret-file", secret_file, "file holding the cluster secret; every datagram and frame "
                 "is authenticated with a key derived from it")/*required*/;
  app.add_option("--cluster", c.cluster, "cluster name; nodes of different clusters ignore each other")
      ->capture_default_str();
  app.add_option("--heartbeat-interval", heartbeat, "how often a node announces itself")->capture_default_str();
  app.add_option("--failure-timeout", failure, "silence after which a member is suspected; it is failed "
                 "once a direct and an indirect probe also fail")->capture_default_str();
  app.add_option("--probe-timeout", probe, "how long a probe may take")->capture_default_str();
  app.add_option("--anti-entropy-interval", anti_entropy, "how often to compare region digests with "
                 "one other member")->capture_default_str();
  app.add_option("--rcvbuf", c.multicast_rcvbuf, "UDP receive buffer to ask the kernel for, bytes "
                 "(status shows what it granted)")->capture_default_str();
  app.add_option("--log-level", c.log_level, "trace, debug, info, warn, error")->capture_default_str();
  auto& ag = out.agent;
  std::string hook_timeout = "10s", failover_timeout = "5s", broadcast_timeout = "500ms", failover_backoff = "2s",
              eviction_delay = "5s", prefer, http;
  app.add_option("--hook-dir", ag.hook_dir, "directory with the role-change hooks: executables named prepare, "
                 "master, replica, data, abort (a missing one is skipped)");
  app.add_option("--hook-timeout", hook_timeout, "time limit of every hook but prepare")->capture_default_str();
  app.add_flag("--witness", ag.witness, "vote and hold the role table, never take a role (2 nodes + a witness "
               "fail over safely)");
  app.add_option("--failover-timeout", failover_timeout, "time limit of the prepare hook (the failover "
                 "operation)")->capture_default_str();
  app.add_option("--broadcast-timeout", broadcast_timeout, "how long a new master waits for a quorum to "
                 "acknowledge it before it vacates the role")->capture_default_str();
  app.add_option("--failover-backoff", failover_backoff, "wait after a failover attempt before another for "
                 "the same epoch")->capture_default_str();
  app.add_option("--eviction-delay", eviction_delay, "how long a failed replica keeps its place in the role "
                 "table")->capture_default_str();
  app.add_option("--prefer-replica", prefer, "node ids the master prefers as replica, in order, comma-separated");
  app.add_option("--event-log", ag.event_log, "append role changes, hook runs and lease bounds to this file as "
                 "JSON lines (monotonic timestamps)");
  app.add_option("--http", http, "HOST:PORT to serve GET /metrics (Prometheus) and /status (JSON) on; "
                 "off unless given");
  app.add_option("--data-dir", c.data_dir, "directory for this node's durable state: the quorum register's "
                 "promises and accepted values, its role and highest epoch; fsync'd before every vote "
                 "(required unless --in-memory)");
  app.add_flag("--in-memory", c.in_memory, "keep that state in memory only: a restarted node recovers it from "
               "its peers, and a full cluster restart forgets the role table and restarts epochs at 1");
  app.add_flag("--enable-fault-injection", c.fault_injection, "accept `rolegridctl fault ...` commands that "
               "drop or delay this node's messages (for tests; refused otherwise)");
  app.set_version_flag("--version", "rolegrid 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    out.exit_now = true;
    return out;
  } catch (const CLI::CallForVersion&) {
    std::cout << "rolegrid 0.1.0\n";
    out.exit_now = true;
    return out;
  } catch (const CLI::ConfigError& e) {
    // CLI11 words an unknown key as "INI was not able to parse KEY".
    std::string what = e.what(), prefix = "INI was not able to parse ";
    if (what.starts_with(prefix))
      throw std::invalid_argument(fmt::format("--config: unknown option '{}'", what.substr(prefix.size())));
    throw std::invalid_argument(fmt::format("--config: {}", what));
  } catch (const CLI::ParseError& e) {
    throw std::invalid_argument(e.what());
  }
  // Checked here rather than by CLI11, so an unknown or misspelt option is
  // reported before the required ones it may have hidden.
  for (const auto* name : {"--node", "--members", "--listen", "--admin", "--secret-file"})
    if (app.count(name) == 0) throw std::invalid_argument(fmt::format("{} is required", name));
  if (c.data_dir.empty() == !c.in_memory)
    throw std::invalid_argument(c.in_memory ? "--data-dir and --in-memory exclude each other"
                                            : "--data-dir is required (or --in-memory to keep no state on disk)");
  c.members = split_list(members);
  c.listen = endpoint_or_throw("--listen", listen);
  c.admin = endpoint_or_throw("--admin", admin);
  if (!multicast.empty()) c.multicast = endpoint_or_throw("--multicast", multicast);
  for (const auto& s : split_list(seeds)) c.seeds.push_back(endpoint_or_throw("--seeds", s));
  try {
    c.secret = read_secret_file(secret_file);
  } catch (const std::runtime_error& e) {
    throw std::invalid_argument(fmt::format("--secret-file: {}", e.what()));
  }
  c.heartbeat_interval = duration_or_throw("--heartbeat-interval", heartbeat);
  c.failure_timeout = duration_or_throw("--failure-timeout", failure);
  c.probe_timeout = duration_or_throw("--probe-timeout", probe);
  c.anti_entropy_interval = duration_or_throw("--anti-entropy-interval", anti_entropy);
  ag.hook_timeout = duration_or_throw("--hook-timeout", hook_timeout);
  ag.failover_timeout = duration_or_throw("--failover-timeout", failover_timeout);
  ag.broadcast_timeout = duration_or_throw("--broadcast-timeout", broadcast_timeout);
  ag.failover_backoff = duration_or_throw("--failover-backoff", failover_backoff);
  ag.eviction_delay = duration_or_throw("--eviction-delay", eviction_delay);
  if (app.count("--http") > 0 || !http.empty()) {
    ag.http = endpoint_or_throw("--http", http);
    if (*ag.http == c.listen || *ag.http == c.admin)
      throw std::invalid_argument(fmt::format("--http: {} is already the --listen or --admin address", http));
  }
  ag.preferred_replicas = split_list(prefer);
  for (const auto& p : ag.preferred_replicas)
    if (std::find(c.members.begin(), c.members.end(), p) == c.members.end())
      throw std::invalid_argument(fmt::format("--prefer-replica: '{}' is not in --members", p));
  if (auto why = grid::validate(c); !why.empty()) throw std::invalid_argument(why);
  return out;
}

}  // namespace rg::tools
