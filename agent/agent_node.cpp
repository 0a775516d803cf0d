#include "agent/agent_node.h"

#include <chrono>

#include <fmt/format.h>

#include "agent/events.h"
#include "common/log.h"

namespace rg::agent {

using nlohmann::json;

namespace {

constexpr std::size_t kEventsKept = 500;
constexpr const char* kNodesRegion = "nodes";
constexpr const char* kAgentNote = "agent";  // this node's role and highest epoch seen, in the data dir

std::int64_t mono_ms(Time t) { return to_ms(t.time_since_epoch()); }

std::string wall_now() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

std::optional<Role> parse_role(const std::string& s) {
  if (s == "master") return Role::master;
  if (s == "replica") return Role::replica;
  if (s == "data") return Role::data;
  if (s == "witness") return Role::witness;
  return std::nullopt;
}

AgentConfig agent_config(const grid::Node& node, const AgentOptions& o) {
  AgentConfig c;
  c.self = node.config().node;
  c.topology = node.topology();
  c.witness = o.witness;
  c.heartbeat_interval = node.config().heartbeat_interval;
  c.failure_timeout = node.config().failure_timeout;
  c.failover_timeout = o.failover_timeout;
  c.broadcast_timeout = o.broadcast_timeout;
  c.failover_backoff = o.failover_backoff;
  c.eviction_delay = o.eviction_delay;
  c.preferred_replicas = o.preferred_replicas;
  return c;
}

}  // namespace

AgentNode::AgentNode(boost::asio::io_context& io, grid::Node& node, AgentOptions options)
    : io_(io),
      node_(node),
      options_(std::move(options)),
      agent_(agent_config(node, options_), Clock::now()),
      hooks_(io, options_.hook_dir),
      timer_(io),
      started_(Clock::now()) {
  if (!options_.event_log.empty()) {
    event_log_.open(options_.event_log, std::ios::app);
    if (!event_log_) throw std::runtime_error(fmt::format("cannot open --event-log '{}'", options_.event_log));
  }
  register_admin();
  make_watchdog();
  if (options_.http) {
    http_ = std::make_unique<HttpServer>(io_, *options_.http,
                                               [this](std::string_view target) { return http_answer(target); });
    log::info("+http: /metrics and /status on http://{}", options_.http->str());
  }
}

void AgentNode::start() {
  node_.on_member_event([this](const grid::MembershipEvent&) {
    feed([this](HaAgent& a, Time now, AgentOutput& out) { a.on_members(member_view(), now, out); });
  });
  // A member change catches up every register key (MemberChange).
  node_.add_quorum_key(kRoleKey);
  node_.add_quorum_key(kFailoverKey);
  node_.on_config([this](const Topology& t) {
    feed([&](HaAgent& a, Time now, AgentOutput& out) {
      a.on_config(t, now, out);
      a.on_members(member_view(), now, out);
    });
  });
  node_.on_quorum_change([this](const grid::QCommit& c) {
    if (c.key != kRoleKey) return;
    auto table = from_register(c.value);
    feed([&](HaAgent& a, Time now, AgentOutput& out) { a.on_table(table, now, out, c.lease_hint()); });
  });
  node_.on_app("agent.broadcast", [this](const NodeId& from, const std::string& payload) {
    json j = json::parse(payload, nullptr, false);
    if (j.is_discarded() || !j.contains("epoch") || !j.contains("master")) return;
    auto epoch = j["epoch"].get<std::uint64_t>();
    bool ack = false;
    feed([&](HaAgent& a, Time now, AgentOutput& out) { ack = a.on_broadcast(j["master"].get<std::string>(), epoch, now, out); });
    if (ack) node_.send_app(from, "agent.ack", json{{"epoch", epoch}}.dump());
    else record("broadcast-refused", {{"from", from}, {"their_epoch", epoch}});
  });
  node_.on_app("agent.ack", [this](const NodeId& from, const std::string& payload) {
    json j = json::parse(payload, nullptr, false);
    if (j.is_discarded() || !j.contains("epoch")) return;
    feed([&](HaAgent& a, Time now, AgentOutput& out) { a.on_broadcast_ack(from, j["epoch"].get<std::uint64_t>(), now, out); });
  });
  node_.add_status("agent", [this] { return roles_json().dump(); });
  node_.admin().set_context([this] { return context_json(); });
  if (options_.witness) log::info("+witness: this node votes and holds the role table but never takes a role");
  record("start", {{"incarnation", node_.incarnation()}, {"witness", options_.witness}});
  tick();
}

void AgentNode::tick() {
  auto now = Clock::now();
  if (!ready_ && node_.transfer().synced && node_.quorum_ready()) {
    ready_ = true;
    // What this node was before it (re)started: its own note in the data
    // dir (which outlives a full cluster restart), else its entry as the
    // grid remembers it.
    std::optional<std::string> before = node_.note(kAgentNote);
    if (!before)
      if (const auto* r = node_.store().find(kNodesRegion))
        if (auto v = r->get(node_.config().node)) before = v->value;
    if (before) {
      json j = json::parse(*before, nullptr, false);
      if (!j.is_discarded() && j.contains("role") && j.contains("epoch"))
        if (auto role = parse_role(j["role"].get<std::string>()))
          agent_.set_previous_role(*role, j["epoch"].get<std::uint64_t>());
    }
    feed([this](HaAgent& a, Time t, AgentOutput& out) {
      a.on_members(member_view(), t, out);
      a.on_ready(t, out);
      std::optional<RoleTable> table;
      if (const auto* c = node_.quorum_value(kRoleKey)) table = from_register(c->value);
      a.on_table(table, t, out);
    });
    write_node_entry();
  }
  if (ready_) {
    // The view also changes without member events (a member finishes its
    // state transfer, writes its nodes/<id> entry): refresh it each beat.
    if (now >= next_view_) {
      next_view_ = now + node_.config().heartbeat_interval;
      feed([this](HaAgent& a, Time t, AgentOutput& out) { a.on_members(member_view(), t, out); });
    }
    feed([](HaAgent& a, Time t, AgentOutput& out) { a.tick(t, out); });
  }
  timer_.expires_after(milliseconds(10));
  timer_.async_wait([this](auto ec) {
    if (!ec && !stopping_) tick();
  });
}

void AgentNode::feed(const std::function<void(HaAgent&, Time, AgentOutput&)>& input) {
  AgentOutput out;
  auto now = Clock::now();
  input(agent_, now, out);
  count_master_change();
  // Armed before the outputs run the master hook; a required watchdog that
  // fails stops the node before it does anything as master.
  if (!update_watchdog(now)) return;
  // A master hook still running when the role is lost is killed with its
  // process group; the new role's hook (queued by carry_out) runs next.
  if (hooks_.running() == "master" && !agent_.acting_master(now)) hooks_.supersede("master");
  carry_out(out);
  // Every move of the lease bound goes to the event log (not the ring of
  // recent events: ten a second), so a checker can rebuild exactly when
  // this node allowed itself to act as master.
  if (event_log_.is_open() && agent_.acting_master(now) && agent_.lease_bound() != logged_bound_) {
    logged_bound_ = agent_.lease_bound();
    json j{{"t_ms", mono_ms(now)}, {"node", node_.config().node}, {"incarnation", node_.incarnation()},
           {"event", "lease"}, {"epoch", agent_.epoch_seen()}, {"acting_master", true},
           {"lease_bound_ms", mono_ms(logged_bound_)},
           // Microseconds too, for benchmarks of the renewal round trip.
           {"t_us", to_us(now.time_since_epoch())}, {"lease_bound_us", to_us(logged_bound_.time_since_epoch())}};
    event_log_ << j.dump() << '\n';
    event_log_.flush();
  }
}

// The watchdog's timeout follows from the lease (the failure timeout); a
// device that cannot time out before the master's own lease bound is
// refused in required mode and skipped in automatic mode.
void AgentNode::make_watchdog() {
  if (options_.watchdog_mode == WatchdogMode::off) return;
  auto device = make_watchdog_device(options_.watchdog);
  const auto& cfg = node_.config();
  auto t = watchdog_timeout(cfg.failure_timeout, AgentConfig{}.drift, cfg.heartbeat_interval, device->granularity());
  if (!t) {
    auto why = fmt::format("--watchdog {}: the lease ({} ms) minus its margin is shorter than the device's "
                           "{} ms step; raise --failure-timeout (3s or more for a Linux watchdog)",
                           options_.watchdog, to_ms(cfg.failure_timeout), to_ms(device->granularity()));
    if (options_.watchdog_mode == WatchdogMode::required) throw std::invalid_argument(why);
    log::warn("{}: running without a watchdog", why);
    return;
  }
  watchdog_ = std::make_unique<Watchdog>(options_.watchdog_mode, std::move(device), *t);
  log::info("+watchdog: {} ({}), timeout {} ms while master", options_.watchdog,
            to_string(options_.watchdog_mode), to_ms(*t));
}

bool AgentNode::update_watchdog(Time now) {
  if (!watchdog_) return true;
  auto r = watchdog_->update(agent_.acting_master(now), agent_.lease_bound(), now);
  switch (r.change) {
    case Watchdog::Change::armed:
      record("watchdog-armed", {{"timeout_ms", to_ms(watchdog_->timeout())}});
      break;
    case Watchdog::Change::disarmed:
      record("watchdog-disarmed", {});
      break;
    case Watchdog::Change::failed:
      log::error("+watchdog-failed: {}", r.error);
      record("watchdog-failed", {{"text", r.error}});
      // Required: never act as master unguarded. Stop at once; the lease
      // runs out at the acceptors and another node takes over.
      if (watchdog_->mode() == WatchdogMode::required && fatal_) {
        stopping_ = true;  // no more ticks: nothing runs as master from here
        fatal_(fmt::format("the required watchdog failed: {}", r.error));
        return false;
      }
      break;
    default:
      break;
  }
  return true;
}

void AgentNode::carry_out(AgentOutput& out) {
  for (const auto& n : out.notes) {
    log::info("{}", n);
    record("note", {{"text", n}});
  }
  for (const auto& s : out.steps)
    record("failover-step", {{"step", s.step}, {"start_ms", mono_ms(s.start)}, {"end_ms", mono_ms(s.end)},
                             {"took_ms", to_ms(s.end - s.start)}, {"outcome", s.outcome}});
  for (const auto& c : out.changes) {
    ++role_changes_[c.event];
    if (c.to == Role::master && c.from != Role::master) ++promotions_;
    log::set_role(c.epoch, to_string(c.to));
    log::info("{} {} -> {} epoch {}: {}", c.event, to_string(c.from), to_string(c.to), c.epoch, c.reason);
    record(c.event, {{"from", to_string(c.from)}, {"to", to_string(c.to)}, {"reason", c.reason}});
  }
  if (!out.changes.empty()) write_node_entry();
  if (out.abort_hook) hooks_.abort(hook::prepare);
  for (const auto& h : out.hooks) run_hook(h);
  for (const auto& b : out.broadcasts) {
    record("broadcast", {{"master", b.master}, {"for_epoch", b.epoch}});
    node_.broadcast_app("agent.broadcast", json{{"epoch", b.epoch}, {"master", b.master}}.dump());
  }
  for (auto& c : out.cas) run_cas(std::move(c));
}

void AgentNode::run_cas(CasRequest req) {
  auto id = req.id;
  if (req.raw) {  // another register (the failover reservation): no table in the answer
    node_.cas(req.key, std::move(req.raw), [this, id, purpose = req.purpose](const grid::CasResult& r) {
      // A reservation that found no majority holds a failover off: say why
      // (outbid, silent acceptors), as the failover step's outcome cannot.
      if (r.outcome == grid::CasOutcome::no_quorum)
        log::info("cas {} {}: {}", purpose, to_string(r.outcome), r.reason);
      else if (r.outcome != grid::CasOutcome::committed)
        log::debug("cas {} {}: {}", purpose, to_string(r.outcome), r.reason);
      feed([&](HaAgent& a, Time now, AgentOutput& out) { a.on_cas_done(id, r.outcome, std::nullopt, r.started, now, out); });
    }, req.mode);
    return;
  }
  auto change = req.change;
  node_.cas(
      kRoleKey,
      [change](const std::optional<grid::RegValue>& cur) -> std::optional<grid::RegValue> {
        std::optional<RoleTable> t;
        if (cur) t = from_register(*cur);
        auto next = change(t);
        if (!next) return std::nullopt;
        return to_register(*next);
      },
      [this, id, purpose = req.purpose](const grid::CasResult& r) {
        std::optional<RoleTable> value;
        if (r.value) value = from_register(*r.value);
        if (r.outcome != grid::CasOutcome::committed && purpose != "renew")
          log::debug("cas {} {}: {}", purpose, to_string(r.outcome), r.reason);
        feed([&](HaAgent& a, Time now, AgentOutput& out) {
          a.on_cas_done(id, r.outcome, value, r.started, now, out, r.value_lease_left_ms);
        });
      },
      req.mode);
}

void AgentNode::run_hook(const HookRun& h) {
  HookRequest req;
  req.hook = h.hook;
  req.limit = h.limit > Duration::zero() ? h.limit : options_.hook_timeout;
  req.env = {{"ROLEGRID_NODE", node_.config().node},
             {"ROLEGRID_ROLE", to_string(h.role)},
             {"ROLEGRID_EPOCH", std::to_string(h.epoch)},
             {"ROLEGRID_PREV_MASTER", h.prev_master},
             {"ROLEGRID_HOOK", h.hook}};
  if (h.hook == hook::master || h.hook == hook::replica || h.hook == hook::data) {
    // A role's hook is dropped if, when its turn comes, a later role change
    // has queued its own or the role is no longer held (prepare and abort
    // belong to a failover in progress and always run).
    auto seq = ++role_hook_seq_;
    req.still_current = [this, seq, role = h.role] {
      if (seq != role_hook_seq_ || agent_.role() != role) return false;
      return role != Role::master || agent_.acting_master(Clock::now());
    };
  }
  // The start goes to the event log too: a master hook's start is when the
  // service it starts may begin (the chaos checker's service intervals).
  req.on_start = [this, hook = h.hook, epoch = h.epoch, prev = h.prev_master](int pid) {
    // prepare and abort belong to a failover of `prev` at `epoch`.
    record("hook-started", {{"hook", hook}, {"pid", pid}, {"for_master", prev}, {"for_epoch", epoch}});
  };
  record("hook-queued", {{"hook", h.hook}, {"hook_role", to_string(h.role)}});
  hooks_.run(std::move(req), [this](const HookResult& r) {
    last_hook_ = r.hook;
    last_hook_status_ = r.status;
    last_hook_at_ = wall_now();
    if (r.ran) {
      auto& n = hook_counts_[r.hook];
      ++n.runs;
      if (r.status != 0 || r.timed_out || r.aborted || !r.error.empty()) ++n.failures;
    }
    record("hook", {{"hook", r.hook}, {"ran", r.ran}, {"status", r.status}, {"timed_out", r.timed_out},
                    {"aborted", r.aborted}, {"superseded", r.superseded}, {"took_ms", to_ms(r.took)}});
    write_node_entry();
    feed([&](HaAgent& a, Time now, AgentOutput& out) { a.on_hook_done(r.hook, r.status, now, out); });
  });
}

void AgentNode::record(const std::string& event, const json& fields) {
  auto now = Clock::now();
  json j{{"t_ms", mono_ms(now)},
         {"wall", wall_now()},
         {"node", node_.config().node},
         {"incarnation", node_.incarnation()},
         {"event", event},
         {"role", to_string(agent_.role())},
         {"state", to_string(agent_.state())},
         {"epoch", agent_.epoch_seen()},
         {"acting_master", agent_.acting_master(now)},
         {"lease_bound_ms", agent_.acting_master(now) ? mono_ms(agent_.lease_bound()) : 0}};
  for (const auto& [k, v] : fields.items()) j[k] = v;
  if (event_log_.is_open()) {
    event_log_ << j.dump() << '\n';
    event_log_.flush();
  }
  events_.push_back(j);
  if (events_.size() > kEventsKept) events_.pop_front();
  std::erase_if(followers_, [](const grid::Reply& r) { return !r.alive(); });
  for (const auto& f : followers_) f.more(j.dump());
}

void AgentNode::count_master_change() {
  // The table this node finds when it becomes ready is its baseline, not a change.
  if (!ready_) return;
  const auto& t = agent_.table();
  std::optional<std::pair<NodeId, std::uint64_t>> now;
  if (t && t->master) now.emplace(t->master->node, t->master->epoch);
  if (master_seen_ && now && now != last_master_) ++master_changes_;
  master_seen_ = true;
  last_master_ = now;
}

MemberView AgentNode::member_view() const {
  MemberView view;
  const Time now = Clock::now();
  const auto* nodes = node_.store().find(kNodesRegion);
  for (const auto& id : node_.membership().topology().members()) {
    if (id == node_.config().node) continue;
    MemberStatus st;
    st.alive = node_.membership().is_alive(id);
    st.synced = node_.member_synced(id);
    if (const auto* m = node_.membership().find(id)) {
      st.alive_since = m->alive_since;
      // Three quarters of a failure timeout without a word is many
      // heartbeats lost in a row: a pause or a cut, rarely loss alone (a
      // flap here can abort a run for a master that only seemed back).
      st.silent = m->state == grid::MemberState::suspected ||
                  now - m->last_heard > node_.config().failure_timeout * 3 / 4;
    }
    if (nodes) {
      if (auto v = nodes->get(id)) {
        json j = json::parse(v->value, nullptr, false);
        if (!j.is_discarded()) {
          if (j.contains("role")) st.last_role = parse_role(j["role"].get<std::string>());
          if (j.contains("epoch")) st.last_role_epoch = j["epoch"].get<std::uint64_t>();
          if (j.contains("witness")) st.witness = j["witness"].get<bool>();
        }
      }
    }
    view[id] = st;
  }
  return view;
}

void AgentNode::write_node_entry() {
  const auto& c = node_.config();
  json j{{"node", c.node},
         {"role", to_string(agent_.role())},
         {"state", to_string(agent_.state())},
         {"epoch", agent_.epoch_seen()},
         {"incarnation", node_.incarnation()},
         {"listen", c.listen.str()},
         {"admin", c.admin.str()},
         {"witness", options_.witness},
         {"hook", last_hook_.empty() ? json(nullptr)
                                     : json{{"name", last_hook_}, {"status", last_hook_status_}, {"at", last_hook_at_}}}};
  node_.put(kNodesRegion, c.node, j.dump(), nullptr);
  // The same role and highest epoch seen, durable in the data dir (a
  // failed save is logged by the grid and stops this node voting).
  node_.save_note(kAgentNote, json{{"role", to_string(agent_.role())}, {"epoch", agent_.epoch_seen()}}.dump());
}

void AgentNode::stop(std::function<void()> done) {
  if (stopping_) return;
  feed([](HaAgent& a, Time now, AgentOutput& out) { a.on_shutdown(now, out); });
  stopping_ = true;
  timer_.cancel();
  // A master's step-down hook (queued by on_shutdown) stops its service:
  // leave only once it has finished, so the next master's service never
  // starts beside ours. Its own time limit bounds the wait.
  wait_hooks_then(Clock::now() + options_.hook_timeout + milliseconds(500), std::move(done));
}

void AgentNode::wait_hooks_then(Time deadline, std::function<void()> done) {
  auto t = std::make_shared<boost::asio::steady_timer>(io_, milliseconds(20));
  t->async_wait([this, t, deadline, done = std::move(done)](auto) mutable {
    if (!hooks_.idle() && Clock::now() < deadline) return wait_hooks_then(deadline, std::move(done));
    // Give the lease release a moment to commit before the grid says goodbye.
    auto r = std::make_shared<boost::asio::steady_timer>(io_, milliseconds(100));
    r->async_wait([r, done = std::move(done)](auto) { done(); });
  });
}

}  // namespace rg::agent
