#include "grid/faults.h"

#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace rg::grid {

namespace {
std::optional<double> number(const std::string& s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}
}  // namespace

std::string FaultRules::apply(const std::vector<std::string>& a) {
  const char* usage =
      "usage: fault drop PEER PERCENT [in|out|both] | delay PEER MS | drop-app CHANNEL [in|out] | disk fail|ok | "
      "replay-hole on|off | early-handover on|off | clear";
  if (a.empty()) return usage;
  if (a[0] == "clear" && a.size() == 1) {
    peers_.clear();
    channels_in_.clear();
    channels_out_.clear();
    disk_error_.clear();
    replay_hole_ = false;
    early_handover_ = false;
    return {};
  }
  if (a[0] == "early-handover" && a.size() == 2 && (a[1] == "on" || a[1] == "off")) {
    early_handover_ = a[1] == "on";
    return {};
  }
  if (a[0] == "replay-hole" && a.size() == 2 && (a[1] == "on" || a[1] == "off")) {
    replay_hole_ = a[1] == "on";
    return {};
  }
  if (a[0] == "disk" && a.size() == 2 && (a[1] == "fail" || a[1] == "ok")) {
    disk_error_ = a[1] == "fail" ? "fdatasync failed: Input/output error (injected fault)" : "";
    return {};
  }
  if (a[0] == "drop" && (a.size() == 3 || a.size() == 4)) {
    auto pct = number(a[2]);
    if (!pct || *pct > 100) return fmt::format("fault drop: '{}' is not a percentage 0-100", a[2]);
    std::string dir = a.size() == 4 ? a[3] : "both";
    if (dir != "in" && dir != "out" && dir != "both") return usage;
    auto& p = peers_[a[1]];
    if (dir != "out") p.drop_in = *pct / 100;
    if (dir != "in") p.drop_out = *pct / 100;
    return {};
  }
  if (a[0] == "delay" && a.size() == 3) {
    auto ms = number(a[2]);
    if (!ms) return fmt::format("fault delay: '{}' is not a number of milliseconds", a[2]);
    peers_[a[1]].delay_in = std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(*ms));
    return {};
  }
  if (a[0] == "drop-app" && (a.size() == 2 || a.size() == 3)) {
    std::string dir = a.size() == 3 ? a[2] : "in";
    if (dir == "in") channels_in_.insert(a[1]);
    else if (dir == "out") channels_out_.insert(a[1]);
    else return usage;
    return {};
  }
  return usage;
}

std::string FaultRules::describe() const {
  nlohmann::json j;
  nlohmann::json peers = nlohmann::json::object();
  for (const auto& [id, p] : peers_)
    peers[id] = {{"drop_in", p.drop_in}, {"drop_out", p.drop_out}, {"delay_in_ms", to_ms(p.delay_in)}};
  j["peers"] = peers;
  j["drop_app_in"] = channels_in_;
  j["drop_app_out"] = channels_out_;
  j["dropped"] = dropped;
  j["delayed"] = delayed;
  j["disk_error"] = disk_error_;
  j["replay_hole"] = replay_hole_;
  j["early_handover"] = early_handover_;
  return j.dump();
}

}  // namespace rg::grid
