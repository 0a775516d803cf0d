// WritePath: the replication stream (write-through writes, batches, acks,
// NAKs, resends).
#include "grid/write_path.h"

#include <algorithm>
#include <utility>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "grid/envelope.h"

namespace rg::grid {

namespace {
// A datagram carries as many writes as fit below this; a TCP frame more.
constexpr std::size_t kDatagramBudget = kMaxDatagramBody - 4096;
constexpr std::size_t kFrameBudget = 1024 * 1024;
// Local writes held until this node may stamp them (confirm_origin): with
// its peers up that is about a heartbeat away. More bytes than
// this, or a write older than kHeldFor failure timeouts (and 10 s), is a
// node cut off at start: refused, not kept.
constexpr std::size_t kMaxHeldBytes = 16 * 1024 * 1024;
constexpr int kHeldFor = 5;
constexpr auto kHeldForAtLeast = std::chrono::seconds(10);
constexpr const char* kHeldWhy = "this node has not yet learnt its index in the cluster's configuration";

std::size_t write_size(const Write& w) {
  return w.region.size() + w.key.size() + w.field.size() + w.value.size() + 32;
}
}  // namespace

WritePath::WritePath(NodeContext& ctx, MemberIndex self_index, Store& store, PeerLinks& links, Multicast multicast)
    : ctx_(ctx), self_index_(self_index), store_(store), links_(links), multicast_(std::move(multicast)) {}

void WritePath::submit(Write w, DoneFn done) {
  if (ctx_.leaving) {
    if (done) done(false, "node is leaving the cluster");
    return;
  }
  if (!origin_known_) {
    if (held_bytes_ + write_size(w) > kMaxHeldBytes) {
      if (done) done(false, fmt::format("{}; it holds writes until then, and holds too many now", kHeldWhy));
      return;
    }
    held_bytes_ += write_size(w);
    held_.push_back(HeldWrite{std::move(w), std::move(done), Clock::now()});
    return;
  }
  auto now = Clock::now();
  last_write_ = now;
  w.version = store_.next_version(self_index_);
  store_.apply(w);
  ++ctx_.counters.writes_local;
  auto seq = sender_.push(std::move(w));
  if (done) pending_.push_back(PendingWrite{seq, std::move(done), now});
  schedule_flush();
}

void WritePath::confirm_origin() {
  if (origin_known_) return;
  origin_known_ = true;
  held_bytes_ = 0;
  for (auto& h : std::exchange(held_, {})) submit(std::move(h.write), std::move(h.done));
}

void WritePath::fail_held(const std::string& why) {
  held_bytes_ = 0;
  for (auto& h : std::exchange(held_, {}))
    if (h.done) h.done(false, why);
}

// Held writes wait at most kHeldFor failure timeouts (and 10 s); oldest first.
void WritePath::expire_held(Time now) {
  auto limit = std::max<Duration>(ctx_.config.failure_timeout * kHeldFor, kHeldForAtLeast);
  while (!held_.empty() && now - held_.front().since >= limit) {
    auto h = std::move(held_.front());
    held_.pop_front();
    held_bytes_ -= write_size(h.write);
    if (h.done) h.done(false, fmt::format("{} within {} ms", kHeldWhy, to_ms(limit)));
  }
}

void WritePath::schedule_flush() {
  if (flush_posted_) return;
  flush_posted_ = true;
  // Runs after everything already queued on the loop: writes and acks that
  // arrive together leave together.
  boost::asio::post(ctx_.io, [this] {
    flush_posted_ = false;
    flush();
  });
}

// Cuts `writes` into batches of at most `budget` bytes (one write at least),
// each sealed as one Data frame and handed to `send`.
template <class Send>
void WritePath::send_batches(std::uint64_t first, const std::vector<const Write*>& writes, std::size_t budget,
                             Send&& send) {
  std::size_t i = 0;
  while (i < writes.size()) {
    std::size_t j = i, bytes = 0;
    while (j < writes.size() && (j == i || bytes + write_size(*writes[j]) <= budget)) bytes += write_size(*writes[j++]);
    std::string out;
    auto start = frame_begin(out);
    encode_into(out, DataOut{&ctx_.self, first + i, writes.data() + i, static_cast<std::uint32_t>(j - i)});
    frame_end(out, start, static_cast<std::uint8_t>(MsgType::data));
    send(out);
    i = j;
  }
}

void WritePath::flush() {
  std::uint64_t first = 0;
  auto writes = sender_.take_sendable(first);
  if (multicast_) {
    send_batches(first, writes, kDatagramBudget, [&](std::string& out) { multicast_(out); });
  } else {
    send_batches(first, writes, kFrameBudget, [&](std::string& out) {
      for (const auto& [peer, acked] : sender_.acks()) links_.send_frame(peer, out);
    });
  }
  sender_.settle();
  for (const auto& origin : acks_due_)
    if (auto next = receiver_.ack_point(origin)) links_.send(origin, MsgType::ack, Ack{*next});
  acks_due_.clear();
  complete_writes();
}

void WritePath::remove_peer(const NodeId& peer) {
  sender_.remove_peer(peer);
  complete_writes();  // its acknowledgement is no longer waited for
}

void WritePath::restate(const NodeId& peer) {
  if (auto start = sender_.peer_start(peer)) links_.send(peer, MsgType::hello, Hello{*start});
}

void WritePath::on_hello(const Sender& from, const Hello& m) {
  receiver_.on_hello(from.node, from.incarnation, m.start);
  acks_due_.insert(from.node);
  schedule_flush();
}

void WritePath::on_data(const Sender& from, const Data& m, Time now) {
  last_write_ = now;
  for (const auto& w : m.writes) {
    store_.apply(w);
    ++ctx_.counters.writes_applied;
  }
  if (receiver_.on_data(from.node, from.incarnation, m.first, m.writes.size(), now)) acks_due_.insert(from.node);
  for (const auto& g : receiver_.gaps(now)) {
    ++ctx_.counters.naks_sent;
    links_.send(g.origin, MsgType::nak, Nak{g.from, g.to});
  }
  if (!acks_due_.empty()) schedule_flush();
}

void WritePath::on_ack(const NodeId& from, const Ack& m, Time now) {
  if (auto r = sender_.on_ack(from, m.next, now)) send_resend(*r);
  complete_writes();
}

void WritePath::on_nak(const NodeId& from, const Nak& m, Time now) {
  ++ctx_.counters.naks_received;
  send_resend(sender_.on_nak(from, m.from, m.to, now));
}

void WritePath::on_reset(const Sender& from, const Reset& m) {
  ++ctx_.counters.resets;
  receiver_.on_reset(from.node, from.incarnation, m.next);
  acks_due_.insert(from.node);
  schedule_flush();
}

void WritePath::tick(Time now) {
  if (!held_.empty()) expire_held(now);
  for (const auto& r : sender_.tick(now)) send_resend(r);
  for (const auto& [peer, start] : sender_.hellos_due(now)) links_.send(peer, MsgType::hello, Hello{start});
  for (const auto& g : receiver_.gaps(now)) {
    ++ctx_.counters.naks_sent;
    links_.send(g.origin, MsgType::nak, Nak{g.from, g.to});
  }
}

void WritePath::complete_writes() {
  auto done_below = sender_.completed();
  bool progressed = false;
  Time now{};
  while (!pending_.empty() && pending_.front().seq < done_below) {
    if (now == Time{}) now = Clock::now();
    latency_.observe(now - pending_.front().submitted);
    auto fn = std::move(pending_.front().done);
    pending_.pop_front();
    fn(true, {});
    progressed = true;
  }
  // Acks opened the window: writes it held back can go now.
  if (progressed && sender_.queued() > 0) schedule_flush();
}

void WritePath::send_resend(const StreamSender::Resend& r) {
  if (r.reset) {
    ++ctx_.counters.resets;
    links_.send(r.peer, MsgType::reset, Reset{r.reset_to});
  }
  send_batches(r.first, r.writes, kFrameBudget, [&](const std::string& out) { links_.send_frame(r.peer, out); });
}

}  // namespace rg::grid
