#include "grid/stream_sender.h"

#include <algorithm>

namespace rg::grid {

StreamSender::StreamSender(StreamSenderConfig config) : config_(config) {}

std::uint64_t StreamSender::add_peer(const NodeId& peer, Time now) {
  // Writes already sent were not required from this peer (it was not in the
  // view when they were made): its stream starts at the first unsent write.
  auto& p = peers_[peer];
  p.start = sent_;
  p.acked = sent_;
  p.progress = now;
  p.resent = now;
  p.confirmed = false;
  p.hello_at = now;
  return p.start;
}

std::uint64_t StreamSender::restore_peer(const NodeId& peer, Time now) {
  if (auto it = peers_.find(peer); it != peers_.end()) return it->second.start;
  return add_peer(peer, now);
}

void StreamSender::remove_peer(const NodeId& peer) {
  peers_.erase(peer);
  advance();
}

std::optional<std::uint64_t> StreamSender::peer_start(const NodeId& peer) const {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return std::nullopt;
  return it->second.start;
}

std::uint64_t StreamSender::push(Write w) {
  std::size_t bytes = w.key.size() + w.value.size() + w.field.size() + w.region.size() + 24;
  held_.push_back(Held{std::move(w), bytes});
  return next_++;
}

std::vector<const Write*> StreamSender::take_sendable(std::uint64_t& first) {
  first = sent_;
  std::vector<const Write*> out;
  while (sent_ < next_) {
    const auto& h = held_[sent_ - base_];
    if (!out.empty() && in_flight_bytes_ + h.bytes > config_.window_bytes) break;
    if (out.empty() && in_flight_bytes_ > 0 && in_flight_bytes_ + h.bytes > config_.window_bytes) break;
    in_flight_bytes_ += h.bytes;
    out.push_back(&h.write);
    ++sent_;
  }
  return out;
}

std::optional<StreamSender::Resend> StreamSender::on_ack(const NodeId& peer, std::uint64_t next, Time now) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return std::nullopt;
  bool first = !it->second.confirmed;
  it->second.confirmed = true;
  next = std::min(next, sent_);
  if (next > it->second.acked) {
    it->second.acked = next;
    it->second.progress = now;
    advance();
  }
  if (!first || it->second.acked >= sent_) return std::nullopt;
  // A new peer's first ack, behind what we sent: the writes sent before it
  // could take them (it had not verified our session yet) are lost to it.
  // Resend them now, not after resend_after: waiting made the longest write
  // stall when a member joins (bench-grid's state transfer).
  it->second.resent = now;
  return range(peer, it->second.acked, sent_);
}

void StreamSender::advance() {
  std::uint64_t low = sent_;
  for (const auto& [id, p] : peers_) low = std::min(low, p.acked);
  completed_ = std::max(completed_, low);
  while (base_ < completed_ && !held_.empty()) {
    in_flight_bytes_ -= held_.front().bytes;
    held_.pop_front();
    ++base_;
  }
}

StreamSender::Resend StreamSender::range(const NodeId& peer, std::uint64_t from, std::uint64_t to) {
  Resend r;
  r.peer = peer;
  to = std::min(to, sent_);
  if (from < base_) {
    r.reset = true;
    r.reset_to = base_;
    from = base_;
  }
  r.first = from;
  for (std::uint64_t s = from; s < to && r.writes.size() < config_.resend_max; ++s)
    r.writes.push_back(at(s));
  retransmits_ += r.writes.size();
  return r;
}

StreamSender::Resend StreamSender::on_nak(const NodeId& peer, std::uint64_t from, std::uint64_t to,
                                          Time now) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return Resend{peer, 0, {}, false, 0};
  it->second.resent = now;
  return range(peer, std::max(from, it->second.start), to);
}

std::vector<StreamSender::Resend> StreamSender::tick(Time now) {
  std::vector<Resend> out;
  for (auto& [id, p] : peers_) {
    if (p.acked >= sent_) {
      p.progress = now;
      continue;
    }
    if (now - p.progress < config_.resend_after || now - p.resent < config_.resend_after) continue;
    p.resent = now;
    out.push_back(range(id, p.acked, sent_));
  }
  return out;
}

std::vector<std::pair<NodeId, std::uint64_t>> StreamSender::hellos_due(Time now) {
  std::vector<std::pair<NodeId, std::uint64_t>> out;
  for (auto& [id, p] : peers_) {
    if (p.confirmed || now - p.hello_at < 3 * config_.resend_after) continue;
    p.hello_at = now;
    out.emplace_back(id, p.start);
  }
  return out;
}

std::map<NodeId, std::uint64_t> StreamSender::acks() const {
  std::map<NodeId, std::uint64_t> out;
  for (const auto& [id, p] : peers_) out[id] = p.acked;
  return out;
}

}  // namespace rg::grid
