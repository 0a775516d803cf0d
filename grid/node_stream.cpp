// Node: the replication stream (write-through writes, batches, acks, resends).
#include <boost/asio/post.hpp>

#include "common/log.h"
#include "grid/envelope.h"
#include "grid/node.h"

namespace rg::grid {

namespace {
// A datagram carries as many writes as fit below this; a TCP frame more.
constexpr std::size_t kDatagramBudget = kMaxDatagramBody - 4096;
constexpr std::size_t kFrameBudget = 1024 * 1024;

std::size_t write_size(const Write& w) {
  return w.region.size() + w.key.size() + w.field.size() + w.value.size() + 32;
}
}  // namespace

void Node::put(const std::string& region, const std::string& key, const std::string& value, DoneFn done) {
  submit(Write{region, key, WriteKind::put, {}, value, 0}, std::move(done));
}

void Node::put_field(const std::string& region, const std::string& key, const std::string& field,
                     const std::string& value, DoneFn done) {
  submit(Write{region, key, WriteKind::put_field, field, value, 0}, std::move(done));
}

void Node::del(const std::string& region, const std::string& key, DoneFn done) {
  submit(Write{region, key, WriteKind::del, {}, {}, 0}, std::move(done));
}

void Node::submit(Write w, DoneFn done) {
  if (ctx_.leaving) {
    if (done) done(false, "node is leaving the cluster");
    return;
  }
  auto now = Clock::now();
  last_write_ = now;
  w.version = store_.next_version(self_index_);
  store_.apply(w);
  ++counters_.writes_local;
  auto seq = sender_.push(std::move(w));
  if (done) pending_.push_back(PendingWrite{seq, std::move(done), now});
  schedule_flush();
}

void Node::schedule_flush() {
  if (flush_posted_) return;
  flush_posted_ = true;
  // Runs after everything already queued on the loop: writes and acks that
  // arrive together leave together.
  boost::asio::post(io_, [this] {
    flush_posted_ = false;
    flush();
  });
}

void Node::flush() {
  std::uint64_t first = 0;
  auto writes = sender_.take_sendable(first);
  const Sender self{config_.node, incarnation_};
  std::size_t i = 0;
  while (i < writes.size()) {
    // Cut the batch where it would outgrow one datagram (or one frame).
    std::size_t budget = mcast_ ? kDatagramBudget : kFrameBudget;
    std::size_t j = i, bytes = 0;
    while (j < writes.size() && (j == i || bytes + write_size(*writes[j]) <= budget)) bytes += write_size(*writes[j++]);
    DataOut batch{&self, first + i, writes.data() + i, static_cast<std::uint32_t>(j - i)};
    if (mcast_) {
      std::string out;
      auto start = auth_.begin(out);
      encode_into(out, batch);
      auth_.seal(out, start, static_cast<std::uint8_t>(MsgType::data));
      send_udp(group_, out);
    } else {
      std::string out;
      auto start = auth_.begin(out);
      encode_into(out, batch);
      auth_.seal(out, start, static_cast<std::uint8_t>(MsgType::data));
      for (const auto& [peer, acked] : sender_.acks()) send_peer_frame(peer, out);
    }
    i = j;
  }
  sender_.settle();
  for (const auto& origin : acks_due_)
    if (auto next = receiver_.ack_point(origin)) send_peer(origin, MsgType::ack, Ack{*next});
  acks_due_.clear();
  complete_writes();
}

void Node::on_data(const Sender& s, const Data& d, Time now) {
  last_write_ = now;
  for (const auto& w : d.writes) {
    store_.apply(w);
    ++counters_.writes_applied;
  }
  if (receiver_.on_data(s.node, s.incarnation, d.first, d.writes.size(), now)) acks_due_.insert(s.node);
  for (const auto& g : receiver_.gaps(now)) {
    ++counters_.naks_sent;
    send_peer(g.origin, MsgType::nak, Nak{g.from, g.to});
  }
  if (!acks_due_.empty()) schedule_flush();
}

void Node::complete_writes() {
  auto done_below = sender_.completed();
  bool progressed = false;
  Time now{};
  while (!pending_.empty() && pending_.front().seq < done_below) {
    if (now == Time{}) now = Clock::now();
    write_latency_.observe(now - pending_.front().submitted);
    auto fn = std::move(pending_.front().done);
    pending_.pop_front();
    fn(true, {});
    progressed = true;
  }
  // Acks opened the window: writes it held back can go now.
  if (progressed && sender_.queued() > 0) schedule_flush();
}

void Node::send_resend(const StreamSender::Resend& r) {
  if (r.reset) {
    ++counters_.resets;
    send_peer(r.peer, MsgType::reset, Reset{r.reset_to});
  }
  if (r.writes.empty()) return;
  const Sender self{config_.node, incarnation_};
  std::size_t i = 0;
  while (i < r.writes.size()) {
    std::size_t j = i, bytes = 0;
    while (j < r.writes.size() && (j == i || bytes + write_size(*r.writes[j]) <= kFrameBudget))
      bytes += write_size(*r.writes[j++]);
    std::string out;
    auto start = auth_.begin(out);
    encode_into(out, DataOut{&self, r.first + i, r.writes.data() + i, static_cast<std::uint32_t>(j - i)});
    auth_.seal(out, start, static_cast<std::uint8_t>(MsgType::data));
    send_peer_frame(r.peer, out);
    i = j;
  }
}

}  // namespace rg::grid
