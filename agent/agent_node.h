#pragma once
// AgentNode: the HA agent's shell on one node. It feeds the pure HaAgent
// with what the grid knows (member view, role table commits, broadcasts)
// and time, and carries out what it asks: compare-and-set on the role table,
// hooks (one at a time, in order), broadcasts. It also keeps this node's
// `nodes/<id>` entry, the event log (JSON lines, monotonic timestamps) and
// the admin commands roles, master, switchover, maintenance, events, and
// the optional HTTP endpoint (/metrics, /status; agent_http.cpp).
// One io_context thread, the same as the grid node's.
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "agent/ha_agent.h"
#include "agent/health.h"
#include "agent/hook_runner.h"
#include "agent/watchdog.h"
#include "agent/http_server.h"
#include "grid/node.h"

namespace rg::agent {

struct AgentOptions {
  std::string hook_dir;
  Duration hook_timeout = milliseconds(10000);
  bool witness = false;
  Duration failover_timeout = milliseconds(5000);
  Duration broadcast_timeout = milliseconds(500);
  Duration failover_backoff = milliseconds(2000);
  Duration eviction_delay = milliseconds(5000);
  std::vector<NodeId> preferred_replicas;
  std::string event_log;  // file for JSON lines; empty: none
  std::optional<Endpoint> http;  // /metrics and /status; none: off
  std::string watchdog;          // device path or fake:FILE; empty: none
  WatchdogMode watchdog_mode = WatchdogMode::off;
};

class AgentNode {
 public:
  AgentNode(boost::asio::io_context& io, grid::Node& node, AgentOptions options);
  void start();
  // Graceful stop: a master stops acting and releases its lease, its
  // step-down hook finishes (within its time limit); then `done`.
  void stop(std::function<void()> done);
  // Called when the node must not go on (a required watchdog failed).
  void on_fatal(std::function<void(const std::string&)> fn) { fatal_ = std::move(fn); }

 private:
  void tick();
  void wait_hooks_then(Time deadline, std::function<void()> done);
  void feed(const std::function<void(HaAgent&, Time, AgentOutput&)>& input);
  void carry_out(AgentOutput& out);
  void run_cas(CasRequest req);
  void run_hook(const HookRun& h);
  void record(const std::string& event, const nlohmann::json& fields);
  MemberView member_view() const;
  void write_node_entry();
  nlohmann::json roles_json() const;
  std::string context_json() const;
  void register_admin();
  void count_master_change();
  // agent_http.cpp
  HttpAnswer http_answer(std::string_view target) const;
  HealthView health_view() const;
  std::string metrics_text() const;

  boost::asio::io_context& io_;
  grid::Node& node_;
  AgentOptions options_;
  HaAgent agent_;
  HookRunner hooks_;
  boost::asio::steady_timer timer_;
  bool ready_ = false;
  bool stopping_ = false;
  std::string last_hook_;       // name, status of the last hook run
  int last_hook_status_ = 0;
  std::string last_hook_at_;
  std::ofstream event_log_;
  std::deque<nlohmann::json> events_;  // recent events for `rolegridctl events`
  std::vector<grid::Reply> followers_;
  Time started_;
  // context_json()'s last answer and what it was built from.
  struct ContextKey {
    std::uint64_t epoch = 0;
    NodeId master, replica;
    std::uint64_t master_entry = 0;  // version of the master's entry in "nodes"
    bool operator==(const ContextKey&) const = default;
  };
  mutable std::optional<std::pair<ContextKey, std::string>> context_;
  Time logged_bound_{};
  Time next_view_{};  // last lease bound written to the event log
  // For /metrics: what the grid does not count itself.
  struct HookCount {
    std::uint64_t runs = 0;
    std::uint64_t failures = 0;  // non-zero exit, killed or timed out
  };
  std::map<std::string, HookCount> hook_counts_;
  std::map<std::string, std::uint64_t> role_changes_;  // by event name
  std::uint64_t promotions_ = 0;      // this node became master from another role
  std::uint64_t master_changes_ = 0;  // a different master (or epoch) in the role table, since ready
  bool master_seen_ = false;
  std::optional<std::pair<NodeId, std::uint64_t>> last_master_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<Watchdog> watchdog_;
  std::uint64_t role_hook_seq_ = 0;  // the latest role hook queued (master, replica, data)
  std::function<void(const std::string&)> fatal_;
  void make_watchdog();
  bool update_watchdog(Time now);  // false: stop at once (required watchdog failed)
};

}  // namespace rg::agent
