#include "programs/top_view.h"

#include <chrono>
#include <csignal>
#include <ctime>
#include <future>
#include <initializer_list>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "programs/admin_client.h"

namespace rg::tools {

namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

volatile std::sig_atomic_t interrupted = 0;
void on_interrupt(int) { interrupted = 1; }

struct Ask {
  std::string key;
  std::string cmd;
  std::vector<std::string> args;
};

// The answers of one member to one pipeline of requests.
struct Answers {
  bool reached = false;
  std::string error;  // why not, one line
  std::map<std::string, json> ok;  // by Ask::key; refused requests are absent
  const json* find(const std::string& key) const {
    auto it = ok.find(key);
    return it == ok.end() ? nullptr : &it->second;
  }
};

std::string short_reason(const std::string& what) {
  auto at = what.rfind(": ");
  return at == std::string::npos ? what : what.substr(at + 2);
}

Answers ask(const std::string& admin, const TopOptions& o, const std::vector<Ask>& asks) {
  Answers a;
  try {
    AdminClient client(admin, o.cluster, o.secret, o.timeout);
    std::map<std::uint64_t, std::string> waiting;
    for (const auto& q : asks) waiting[client.send(q.cmd, q.args)] = q.key;
    client.flush();
    auto deadline = SteadyClock::now() + o.timeout;
    while (!waiting.empty()) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
      auto r = left.count() > 0 ? client.read(left) : std::nullopt;
      if (!r) throw std::runtime_error(fmt::format("no answer within {} ms", o.timeout.count()));
      auto it = waiting.find(r->id);
      if (it == waiting.end()) continue;
      if (r->status == grid::AdminStatus::ok) {
        auto j = json::parse(r->body, nullptr, false);
        if (!j.is_discarded()) a.ok[it->second] = std::move(j);
      }
      waiting.erase(it);
    }
    a.reached = true;
  } catch (const std::exception& e) {
    a.error = short_reason(e.what());
  }
  return a;
}

template <class T>
std::optional<T> field(const json* j, std::initializer_list<const char*> path) {
  if (!j) return std::nullopt;
  const json* at = j;
  for (const char* k : path) {
    if (!at->is_object() || !at->contains(k)) return std::nullopt;
    at = &(*at)[k];
  }
  if constexpr (std::is_same_v<T, std::string>) {
    if (!at->is_string()) return std::nullopt;
  } else {
    if (!at->is_number()) return std::nullopt;
  }
  return at->get<T>();
}

struct Sample {
  std::uint64_t incarnation = 0;
  std::int64_t uptime_ms = 0;
  std::uint64_t writes = 0;
};

class Top {
 public:
  explicit Top(TopOptions o) : o_(std::move(o)) {}
  // One refresh as JSON; `answered` tells whether any member answered
  // (if not, "error" says why).
  json snapshot(bool& answered);
  // A snapshot as the text table.
  std::string render(const json& snap) const;

 private:
  std::string header(const std::string& via) const;
  std::optional<double> write_rate(const std::string& id, const json* status);
  void learn_admins(const std::string& via, const std::string& self, const std::vector<std::string>& ids);
  std::map<std::string, Answers> ask_members(const std::string& self, const Answers& view,
                                             const std::vector<std::string>& ids);
  json row(const std::string& id, const std::string& state, const std::string& master_id,
           const std::map<std::string, Answers>& own);

  TopOptions o_;
  std::map<std::string, std::string> admins_;  // member id -> admin HOST:PORT
  std::map<std::string, Sample> last_;
};

std::string Top::header(const std::string& via) const {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char clock[16];
  std::strftime(clock, sizeof clock, "%H:%M:%S", &tm);
  return fmt::format("rolegrid top  cluster {}  via {}  {}  every {:.1f} s\n", o_.cluster, via, clock,
                     static_cast<double>(o_.interval.count()) / 1000.0);
}

std::optional<double> Top::write_rate(const std::string& id, const json* status) {
  auto inc = field<std::uint64_t>(status, {"incarnation"});
  auto up = field<std::int64_t>(status, {"uptime_ms"});
  auto writes = field<std::uint64_t>(status, {"counters", "writes_local"});
  if (!inc || !up || !writes) return std::nullopt;
  std::optional<double> out;
  auto it = last_.find(id);
  // The node's own uptime times the interval, so a slow answer does not skew the rate.
  if (it != last_.end() && it->second.incarnation == *inc && *up > it->second.uptime_ms)
    out = static_cast<double>(*writes - it->second.writes) * 1000.0 / static_cast<double>(*up - it->second.uptime_ms);
  last_[id] = Sample{*inc, *up, *writes};
  return out;
}

// Admin addresses come from the members' own `nodes` entries (kept by the agent).
void Top::learn_admins(const std::string& via, const std::string& self, const std::vector<std::string>& ids) {
  std::vector<Ask> gets;
  for (const auto& id : ids)
    if (id != self) gets.push_back({id, "get", {"nodes", id}});
  if (gets.empty()) return;
  auto entries = ask(via, o_, gets);
  for (const auto& [id, answer] : entries.ok) {
    auto value = field<std::string>(&answer, {"value"});
    auto entry = value ? json::parse(*value, nullptr, false) : json();
    if (entry.is_object() && entry.contains("admin") && entry["admin"].is_string())
      admins_[id] = entry["admin"].get<std::string>();
  }
}

// Every member's own status and roles, asked in parallel (self's come from `view`).
std::map<std::string, Answers> Top::ask_members(const std::string& self, const Answers& view,
                                                const std::vector<std::string>& ids) {
  std::map<std::string, std::future<Answers>> pending;
  for (const auto& id : ids) {
    if (id == self || !admins_.count(id)) continue;
    pending[id] = std::async(std::launch::async, ask, admins_[id], std::cref(o_),
                             std::vector<Ask>{{"status", "status", {}}, {"roles", "roles", {}}});
  }
  std::map<std::string, Answers> own;
  own[self] = view;
  for (auto& [id, f] : pending) own[id] = f.get();
  return own;
}

json Top::row(const std::string& id, const std::string& state, const std::string& master_id,
              const std::map<std::string, Answers>& own) {
  auto it = own.find(id);
  const Answers* a = it != own.end() ? &it->second : nullptr;
  bool reached = a && a->reached;
  const json* st = reached ? a->find("status") : nullptr;
  const json* rl = reached ? a->find("roles") : nullptr;
  auto role = field<std::string>(rl, {"self", "role"});
  auto epoch = field<std::uint64_t>(rl, {"self", "epoch_seen"});
  auto lease = field<std::int64_t>(rl, {"master", "lease_remaining_ms"});
  auto rate = st ? write_rate(id, st) : std::nullopt;
  std::optional<std::uint64_t> lag;
  for (const auto& [sender, sa] : own) {
    const json* ss = sender == id ? nullptr : sa.find("status");
    auto next = field<std::uint64_t>(ss, {"stream", "next_seq"});
    auto acked = field<std::uint64_t>(ss, {"stream", "acks", id.c_str()});
    if (next && acked) lag = lag.value_or(0) + (*next > *acked ? *next - *acked : 0);
  }
  json r{{"id", id}, {"state", state}, {"role", role ? json(*role) : json(nullptr)},
         {"epoch", epoch ? json(*epoch) : json(nullptr)},
         {"lease_remaining_ms", lease && id == master_id ? json(*lease) : json(nullptr)},
         {"writes_per_s", rate ? json(*rate) : json(nullptr)},
         {"lag", lag ? json(*lag) : json(nullptr)}, {"reached", reached}};
  if (!reached) r["error"] = a ? a->error : "admin address unknown";
  return r;
}

json Top::snapshot(bool& answered) {
  answered = false;
  // The cluster view: from --node, or else from any member seen before.
  std::vector<std::string> candidates{o_.node};
  for (const auto& [id, admin] : admins_)
    if (admin != o_.node) candidates.push_back(admin);
  Answers view;
  std::string via, first_error;
  for (const auto& admin : candidates) {
    view = ask(admin, o_, {{"status", "status", {}}, {"members", "members", {}}, {"roles", "roles", {}}});
    if (view.reached && view.find("status") && view.find("members") && view.find("roles")) {
      via = admin;
      break;
    }
    if (first_error.empty()) first_error = view.reached ? "incomplete answer" : view.error;
    view = Answers{};
  }
  if (via.empty()) return json{{"via", o_.node}, {"error", fmt::format("no member answers ({}: {})", o_.node, first_error)}};
  answered = true;

  const json& status = *view.find("status");
  const json& roles = *view.find("roles");
  auto self = status.value("node", "");
  admins_[self] = via;
  std::vector<std::string> ids;
  for (const auto& m : status.value("members", json::array())) ids.push_back(m.get<std::string>());
  std::map<std::string, std::string> state;
  for (const auto& m : *view.find("members")) state[m.value("id", "")] = m.value("state", "?");
  learn_admins(via, self, ids);
  auto own = ask_members(self, view, ids);

  const json master = roles.value("master", json());
  const json replica = roles.value("replica", json());
  std::string master_id = master.is_object() ? master.value("node", "?") : "";
  json snap{{"via", via}, {"node", self}, {"cluster", o_.cluster},
            {"master", master_id.empty() ? json(nullptr) : json(master_id)},
            {"replica", replica.is_object() ? json(replica.value("node", "?")) : json(nullptr)},
            {"epoch", roles.value("epoch", std::uint64_t{0})},
            {"phase", master.is_object() ? json(master.value("phase", "?")) : json(nullptr)},
            {"maintenance", roles.value("maintenance", false)}};
  json rows = json::array();
  for (const auto& id : ids) rows.push_back(row(id, state.count(id) ? state[id] : "?", master_id, own));
  snap["members"] = rows;
  return snap;
}

std::string Top::render(const json& snap) const {
  if (snap.contains("error")) return header(snap.value("via", "")) + snap["error"].get<std::string>() + "\n";
  auto text = [](const json& v) { return v.is_null() ? std::string("-") : v.is_string() ? v.get<std::string>() : v.dump(); };
  std::string out = header(fmt::format("{} ({})", snap["node"].get<std::string>(), snap["via"].get<std::string>()));
  out += fmt::format("master {}  replica {}  epoch {}  phase {}{}\n",
                     snap["master"].is_null() ? "(vacant)" : snap["master"].get<std::string>(),
                     snap["replica"].is_null() ? "(none)" : snap["replica"].get<std::string>(), snap["epoch"].dump(),
                     text(snap["phase"]), snap["maintenance"].get<bool>() ? "  MAINTENANCE (no automatic failover)" : "");
  out += fmt::format("STATE: as {} sees it. LEASE: time left of the master's lease (its own bound). WRITES/S: writes the member "
                     "originated.\nLAG: writes of the other members' streams the member has not acknowledged "
                     "(sum over the senders that answered).\n",
                     snap["node"].get<std::string>());
  out += fmt::format("{:<12} {:<10} {:<8} {:>5} {:>8} {:>9} {:>6}  {}\n", "ID", "STATE", "ROLE", "EPOCH", "LEASE",
                     "WRITES/S", "LAG", "ANSWER");
  for (const auto& r : snap["members"]) {
    std::string lease = r["lease_remaining_ms"].is_null() ? "-" : r["lease_remaining_ms"].dump() + "ms";
    std::string rate = r["writes_per_s"].is_null() ? "-" : fmt::format("{:.1f}", r["writes_per_s"].get<double>());
    std::string answer = r["reached"].get<bool>() ? "ok" : "unreachable (" + r["error"].get<std::string>() + ")";
    out += fmt::format("{:<12} {:<10} {:<8} {:>5} {:>8} {:>9} {:>6}  {}\n", r["id"].get<std::string>(),
                       r["state"].get<std::string>(), text(r["role"]), text(r["epoch"]), lease, rate, text(r["lag"]),
                       answer);
  }
  return out;
}

// Sleeps until `until`, waking early on Ctrl-C.
void nap_until(SteadyClock::time_point until) {
  while (!interrupted && SteadyClock::now() < until)
    std::this_thread::sleep_for(std::min<SteadyClock::duration>(milliseconds(50), until - SteadyClock::now()));
}

}  // namespace

int run_top(const TopOptions& options) {
  std::signal(SIGINT, on_interrupt);
  bool tty = ::isatty(STDOUT_FILENO) == 1;
  Top top(options);
  for (int i = 0; !interrupted && (options.iterations == 0 || i < options.iterations); ++i) {
    auto started = SteadyClock::now();
    bool answered = false;
    auto snap = top.snapshot(answered);
    if (i == 0 && !answered) {
      std::cerr << "rolegridctl: " << snap["error"].get<std::string>() << "\n";
      return 2;
    }
    if (options.json) std::cout << snap.dump() << "\n";  // one JSON line per refresh
    else if (tty) std::cout << "\033[H\033[2J" << top.render(snap);  // home and clear: redraw in place
    else std::cout << (i > 0 ? "\n" : "") << top.render(snap);
    std::cout.flush();
    if (options.iterations == 0 || i + 1 < options.iterations) nap_until(started + options.interval);
  }
  return 0;
}

}  // namespace rg::tools
