#include "agent/health.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace rg::agent {

namespace {

constexpr const char* kJson = "application/json";

// The value of `key` in a query string "a=1&b=2"; nullopt if absent.
std::optional<std::string_view> query_value(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

HttpAnswer json_answer(bool ok, const HealthView& v) { return {ok ? 200u : 503u, kJson, health_json(v) + "\n"}; }

}  // namespace

bool fenced_at(const HealthView& v, std::uint64_t epoch) { return v.acting_master && v.master_epoch == epoch; }

std::string not_fenced_reason(const HealthView& v, std::uint64_t epoch) {
  if (fenced_at(v, epoch)) return "";
  if (v.acting_master) return fmt::format("not fenced: {} acts as master at epoch {}, not {}", v.node, v.master_epoch, epoch);
  return fmt::format("not fenced: {} does not act as master (role {}, table epoch {})", v.node, v.role, v.table_epoch);
}

std::string health_json(const HealthView& v) {
  nlohmann::json j{{"node", v.node},
                   {"role", v.role},
                   {"state", v.state},
                   {"acting_master", v.acting_master},
                   {"epoch", v.table_epoch},
                   {"master", v.master ? nlohmann::json(*v.master) : nlohmann::json(nullptr)},
                   {"quorum", v.acceptor_ready && v.alive >= v.quorum},
                   {"alive", v.alive},
                   {"members_needed", v.quorum}};
  if (v.acting_master) {
    j["master_epoch"] = v.master_epoch;
    j["lease_remaining_ms"] = v.lease_remaining_ms;
  }
  return j.dump();
}

std::optional<HttpAnswer> health_answer(std::string_view target, const HealthView& v) {
  auto q = target.find('?');
  auto path = target.substr(0, q);
  auto query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  if (path == "/master") {
    if (auto e = query_value(query, "epoch")) {
      auto epoch = parse_epoch(*e);
      if (!epoch) return HttpAnswer{400, "text/plain; charset=utf-8", "epoch must be a positive integer\n"};
      return json_answer(fenced_at(v, *epoch), v);
    }
    return json_answer(v.acting_master, v);
  }
  if (path == "/replica") return json_answer(v.role == "replica", v);
  if (path == "/health") return json_answer(v.acceptor_ready && v.alive >= v.quorum, v);
  return std::nullopt;
}

}  // namespace rg::agent
