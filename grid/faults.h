#pragma once
// FaultRules: message loss and delay a test asks a node to inflict on itself
// (rolegrid-chaos, the claim 3-5 tests). Only a node started with
// --enable-fault-injection accepts them; otherwise the admin command is
// refused. Pure bookkeeping: the node's shell consults it on every message.
#include <cstdint>
#include <map>
#include <random>
#include <optional>
#include <set>
#include <vector>
#include <string>

#include "common/clock.h"
#include "common/ids.h"

namespace rg::grid {

class FaultRules {
 public:
  explicit FaultRules(std::uint64_t seed) : rng_(seed) {}

  struct Peer {
    double drop_in = 0;   // probability, 0..1
    double drop_out = 0;
    Duration delay_in{};  // inbound messages from this peer wait this long
  };

  bool drop_in(const NodeId& from) { return roll(find(from).drop_in); }
  bool drop_out(const NodeId& to) { return roll(find(to).drop_out); }
  Duration delay_in(const NodeId& from) const {
    auto it = peers_.find(from);
    return it == peers_.end() ? Duration::zero() : it->second.delay_in;
  }
  bool drop_channel_in(const std::string& channel) const { return channels_in_.count(channel) > 0; }
  bool drop_channel_out(const std::string& channel) const { return channels_out_.count(channel) > 0; }
  bool any() const { return !peers_.empty() || !channels_in_.empty() || !channels_out_.empty(); }
  // A planted hole, to show the attacker tests can fail: datagrams are
  // taken without the session and replay checks (grid/sessions.h).
  bool replay_hole() const { return replay_hole_; }
  // A planted hole, to show the chaos service check can fail: a switchover
  // hands the role over without waiting for the old master's step-down hook.
  bool early_handover() const { return early_handover_; }
  // Non-empty while saves of the data dir are to fail, with this reason.
  const std::string& disk_error() const { return disk_error_; }

  // Applies one admin command; returns "" or a one-line reason.
  //   drop PEER PERCENT [in|out|both]   delay PEER MS   drop-app CHANNEL [in|out]
  //   disk fail|ok   replay-hole on|off   early-handover on|off   clear
  std::string apply(const std::vector<std::string>& args);
  std::string describe() const;  // JSON
  std::uint64_t dropped = 0;
  std::uint64_t delayed = 0;

 private:
  Peer find(const NodeId& id) const {
    auto it = peers_.find(id);
    return it == peers_.end() ? Peer{} : it->second;
  }
  bool roll(double p) {
    if (p <= 0) return false;
    bool hit = p >= 1 || std::uniform_real_distribution<double>(0, 1)(rng_) < p;
    if (hit) ++dropped;
    return hit;
  }
  std::mt19937_64 rng_;
  std::map<NodeId, Peer> peers_;
  std::set<std::string> channels_in_, channels_out_;
  std::string disk_error_;
  bool replay_hole_ = false;
  bool early_handover_ = false;
};

}  // namespace rg::grid
