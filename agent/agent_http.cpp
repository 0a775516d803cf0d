// AgentNode: what the HTTP endpoint serves. Rendered here because only the
// agent sees both halves: the grid's counters and the role view.
#include <array>

#include <fmt/format.h>

#include "agent/agent_node.h"
#include "agent/events.h"

namespace rg::agent {

using nlohmann::json;

namespace {

// Prometheus text exposition format, version 0.0.4.
class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  template <class V>
  void sample(std::string_view name, V value, std::initializer_list<std::pair<std::string_view, std::string_view>> labels = {}) {
    out_ += name;
    if (labels.size() > 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += fmt::format("{}=\"{}\"", k, escape(v));
      }
      out_ += '}';
    }
    out_ += fmt::format(" {}\n", value);
  }
  // A family with one sample: gauges and counters without labels.
  template <class V>
  void single(std::string_view name, std::string_view type, std::string_view help, V value) {
    family(name, type, help);
    sample(name, value);
  }
  std::string take() { return std::move(out_); }

 private:
  // Label values may hold user text (region names).
  static std::string escape(std::string_view v) {
    std::string e;
    for (char c : v) {
      if (c == '\\') e += "\\\\";
      else if (c == '"') e += "\\\"";
      else if (c == '\n') e += "\\n";
      else e += c;
    }
    return e;
  }
  std::string out_;
};

constexpr std::array<Role, 4> kRoles = {Role::master, Role::replica, Role::data, Role::witness};
constexpr std::array<grid::MemberState, 5> kMemberStates = {grid::MemberState::alive, grid::MemberState::suspected,
                                                           grid::MemberState::failed, grid::MemberState::left,
                                                           grid::MemberState::unknown};

std::string_view path_of(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

// The membership as this node sees it (self counts as alive).
void add_member_metrics(Exposition& m, const grid::Node& node) {
  const auto& cfg = node.config();
  const auto& ms = node.membership();
  std::map<grid::MemberState, std::size_t> states;
  for (const auto& id : ms.topology().members()) {
    if (id == cfg.node) {
      ++states[grid::MemberState::alive];
      continue;
    }
    const auto* info = ms.find(id);
    ++states[info ? info->state : grid::MemberState::unknown];
  }
  m.family("rolegrid_members", "gauge", "Members of the topology by state in this node's view (self is alive).");
  for (auto s : kMemberStates) m.sample("rolegrid_members", states[s], {{"state", grid::to_string(s)}});
  m.single("rolegrid_tilt", "gauge", "1 while this node distrusts its own timing (loop stall).", ms.tilted() ? 1 : 0);
  m.single("rolegrid_synced", "gauge", "1 once this node's state transfer is done.", node.transfer().synced ? 1 : 0);
  m.single("rolegrid_quorum_ready", "gauge", "1 once this node's quorum acceptor takes part.",
           node.quorum_ready() ? 1 : 0);
}

void add_traffic_metrics(Exposition& m, const grid::Node& node) {
  const auto& c = node.counters();
  const auto& cc = node.conn_counters();
  m.family("rolegrid_messages_sent_total", "counter", "Datagrams (udp) and frames, peer and admin (tcp), sent.");
  m.sample("rolegrid_messages_sent_total", c.datagrams_out, {{"transport", "udp"}});
  m.sample("rolegrid_messages_sent_total", cc.frames_out, {{"transport", "tcp"}});
  m.family("rolegrid_messages_received_total", "counter", "Datagrams (udp) and frames, peer and admin (tcp), received.");
  m.sample("rolegrid_messages_received_total", c.datagrams_in, {{"transport", "udp"}});
  m.sample("rolegrid_messages_received_total", cc.frames_in, {{"transport", "tcp"}});
  m.family("rolegrid_messages_dropped_total", "counter", "Messages dropped, by reason.");
  m.sample("rolegrid_messages_dropped_total", c.datagrams_dropped, {{"reason", "malformed"}});
  m.sample("rolegrid_messages_dropped_total", cc.bad_frames - std::min(cc.bad_frames, cc.unauthenticated),
           {{"reason", "bad_frame"}});
  m.sample("rolegrid_messages_dropped_total", c.decode_errors, {{"reason", "undecodable"}});
  m.sample("rolegrid_messages_dropped_total", c.refused_messages, {{"reason", "refused"}});
  m.sample("rolegrid_messages_dropped_total", c.link_queue_drops, {{"reason", "link_queue_full"}});
  m.family("rolegrid_messages_unauthenticated_total", "counter", "Messages with a bad authenticator or cluster.");
  m.sample("rolegrid_messages_unauthenticated_total", c.unauthenticated, {{"transport", "udp"}});
  m.sample("rolegrid_messages_unauthenticated_total", cc.unauthenticated, {{"transport", "tcp"}});
  m.single("rolegrid_send_errors_total", "counter", "Sends the kernel refused.", c.send_errors);
  m.single("rolegrid_retransmits_total", "counter", "Writes sent again to a member that had not acknowledged them.",
           node.retransmits());
  m.single("rolegrid_naks_sent_total", "counter", "Gap requests sent.", c.naks_sent);
  m.single("rolegrid_naks_received_total", "counter", "Gap requests answered.", c.naks_received);
  m.single("rolegrid_writes_local_total", "counter", "Writes this node originated.", c.writes_local);
  m.single("rolegrid_writes_applied_total", "counter", "Writes of other members applied here (duplicates too).",
           c.writes_applied);
  m.single("rolegrid_anti_entropy_rounds_total", "counter", "Anti-entropy rounds.", c.anti_entropy_rounds);
}

void add_data_metrics(Exposition& m, grid::Node& node) {  // store() has no const form
  m.family("rolegrid_region_entries", "gauge", "Entries per replicated region (tombstones excluded).");
  auto& store = node.store();
  for (const auto& name : store.region_names())
    m.sample("rolegrid_region_entries", store.region(name).size(), {{"region", name}});

  const auto& h = node.write_latency();
  m.family("rolegrid_write_latency_seconds", "histogram",
           "Write-through writes this node originated, from submit to the last member's acknowledgement.");
  const auto& bounds = grid::LatencyHistogram::kBounds;
  for (std::size_t i = 0; i < bounds.size(); ++i)
    m.sample("rolegrid_write_latency_seconds_bucket", h.cumulative(i), {{"le", fmt::format("{}", bounds[i])}});
  m.sample("rolegrid_write_latency_seconds_bucket", h.count(), {{"le", "+Inf"}});
  m.sample("rolegrid_write_latency_seconds_sum", h.sum());
  m.sample("rolegrid_write_latency_seconds_count", h.count());
}

void add_http_metrics(Exposition& m, const HttpServer* http) {
  if (!http) return;
  const auto& hc = http->counters();
  m.single("rolegrid_http_requests_total", "counter", "HTTP requests answered.", hc.requests);
  m.single("rolegrid_http_bad_requests_total", "counter", "Malformed or oversized HTTP requests.", hc.bad_requests);
  m.single("rolegrid_http_refused_connections_total", "counter", "HTTP connections closed over the cap.",
           hc.refused_connections);
  m.single("rolegrid_http_timeouts_total", "counter", "HTTP connections closed by the read or write timeout.",
           hc.timeouts);
}

}  // namespace

HttpAnswer AgentNode::http_answer(std::string_view target) const {
  auto path = path_of(target);
  if (path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_text()};
  if (path == "/status") {
    // The admin `status` answer (its `agent` section is the `roles` answer)
    // and the `members` answer, built by the same code as for rolegridctl.
    json j = json::parse(node_.status_json());
    j["members"] = json::parse(node_.members_json());
    return {200, "application/json", j.dump(2) + "\n"};
  }
  if (auto a = health_answer(target, health_view())) return *a;
  return {404, "text/plain; charset=utf-8",
          "not found: this node serves /metrics, /status, /master, /replica and /health\n"};
}

HealthView AgentNode::health_view() const {
  auto now = Clock::now();
  HealthView v;
  v.node = node_.config().node;
  v.role = to_string(agent_.role());
  v.state = to_string(agent_.state());
  v.acting_master = agent_.acting_master(now);
  v.master_epoch = agent_.master_epoch();
  v.lease_remaining_ms = v.acting_master ? to_ms(agent_.lease_bound() - now) : 0;
  const auto& t = agent_.table();
  v.table_epoch = t ? t->epoch : 0;
  if (t && t->master) v.master = t->master->node;
  const auto& ms = node_.membership();
  for (const auto& id : ms.topology().members())
    if (id == v.node || ms.is_alive(id)) ++v.alive;
  v.quorum = ms.topology().quorum();
  v.acceptor_ready = node_.quorum_ready();
  return v;
}

std::string AgentNode::metrics_text() const {
  auto now = Clock::now();
  Exposition m;
  const auto& cfg = node_.config();
  const auto& t = agent_.table();

  m.family("rolegrid_node_info", "gauge", "This node's id and cluster (always 1).");
  m.sample("rolegrid_node_info", 1, {{"node", cfg.node}, {"cluster", cfg.cluster}});
  m.single("rolegrid_incarnation", "gauge", "Incarnation of this process (its start time in microseconds).",
           node_.incarnation());

  m.family("rolegrid_role", "gauge", "1 for this node's current role, 0 for the others.");
  for (auto r : kRoles) m.sample("rolegrid_role", agent_.role() == r ? 1 : 0, {{"role", to_string(r)}});
  m.single("rolegrid_acting_master", "gauge", "1 while this node is established master within its lease.",
           agent_.acting_master(now) ? 1 : 0);
  m.single("rolegrid_epoch", "gauge", "Epoch of the role table in this node's copy.", t ? t->epoch : 0);
  m.single("rolegrid_epoch_seen", "gauge", "Highest epoch this node has seen.", agent_.epoch_seen());
  double lease = agent_.acting_master(now) ? std::chrono::duration<double>(agent_.lease_bound() - now).count() : 0.0;
  m.single("rolegrid_lease_remaining_seconds", "gauge",
           "Time left on this node's master lease (0 unless it acts as master).", std::max(lease, 0.0));
  m.single("rolegrid_maintenance", "gauge", "1 while maintenance mode stops automatic failover.",
           t && t->maintenance ? 1 : 0);
  m.single("rolegrid_promotions_total", "counter", "Times this node became master from another role.", promotions_);
  m.single("rolegrid_master_changes_total", "counter",
           "Times the role table named a different master (or epoch) since this node was ready.", master_changes_);
  m.family("rolegrid_role_changes_total", "counter", "Role changes of this node, by event.");
  for (const auto& [event, n] : role_changes_)
    m.sample("rolegrid_role_changes_total", n, {{"event", event.starts_with('+') ? event.substr(1) : event}});

  m.family("rolegrid_hook_runs_total", "counter", "Hook runs (a missing hook does not run).");
  for (const auto* h : hook::all) {
    auto it = hook_counts_.find(h);
    m.sample("rolegrid_hook_runs_total", it == hook_counts_.end() ? 0 : it->second.runs, {{"hook", h}});
  }
  m.family("rolegrid_hook_failures_total", "counter", "Hook runs that exited non-zero, timed out or were killed.");
  for (const auto* h : hook::all) {
    auto it = hook_counts_.find(h);
    m.sample("rolegrid_hook_failures_total", it == hook_counts_.end() ? 0 : it->second.failures, {{"hook", h}});
  }

  add_member_metrics(m, node_);
  add_traffic_metrics(m, node_);
  add_data_metrics(m, node_);
  add_http_metrics(m, http_.get());
  return m.take();
}

}  // namespace rg::agent
