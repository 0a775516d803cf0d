// Simulation of the write stream (grid/stream_sender.h, stream_receiver.h):
// one origin replicating to three receivers over a SimNetwork. As in
// multicast mode, data travels as datagrams, which it loses, duplicates,
// reorders and delays (some by up to half a second); hellos, acks, NAKs and
// resets travel on the TCP links (in order, never lost at random). Receivers
// are paused (their messages delivered late), dropped from the
// stream and registered again (membership: failed, then alive), and
// restarted (they forget the stream). Ground truth is what each receiver
// actually got. Checked after every event:
//   - completed() never goes back and never passes next_seq();
//   - write-through: every write below completed() reached every receiver
//     that was registered when it was made and stayed registered since;
//   - a receiver's ack point never claims a write it did not get (or had
//     reconciled after a Reset);
//   - the origin never believes an ack the receiver did not send.
// Once faults stop, every write completes at every receiver.
//
// A failure prints the seed; RG_SEED=<seed> replays it.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <sstream>
#include <variant>

#include <fmt/format.h>

#include "grid/stream_receiver.h"
#include "grid/stream_sender.h"
#include "tests/sim/sim_network.h"

using namespace rg;
using namespace rg::grid;
using namespace rg::sim;
using namespace std::chrono_literals;

namespace {

struct MData {
  Incarnation inc = 0;
  std::uint64_t first = 0, count = 0;
};
struct MHello {
  Incarnation inc = 0;
  std::uint64_t start = 0;
};
struct MReset {
  Incarnation inc = 0;
  std::uint64_t next = 0;
};
struct MAck {
  std::uint64_t next = 0;
};
struct MNak {
  std::uint64_t from = 0, to = 0;
};
using Wire = std::variant<MData, MHello, MReset, MAck, MNak>;

const NodeId kOrigin = "a";
constexpr Incarnation kInc = 7;
constexpr Duration kTick = 5ms;

struct Receiver {
  NodeId id;
  std::unique_ptr<StreamReceiver> stream = std::make_unique<StreamReceiver>(10ms);
  std::set<std::uint64_t> got;         // ground truth: seqs that arrived, or were reconciled
  std::uint64_t generation = 0;        // bumped when the origin drops it
  std::uint64_t start = 0;             // where its current registration starts
  bool registered = true;
  std::optional<std::uint64_t> acked;  // last ack point it sent
  mutable std::uint64_t prefix = 0;    // cache for StreamCluster::prefix
};

class StreamCluster {
 public:
  StreamCluster(std::uint64_t seed, bool plant_ack_ahead) : rng_(seed), net_(clock_, rng_), plant_(plant_ack_ahead) {
    net_.set_delay(0ms, 20ms);
    net_.set_loss(0.1);
    net_.set_duplicate(0.05);
    net_.set_long_delay(0.02, 500ms);
    for (const char* id : {"b", "c", "d"}) {
      rx_.emplace(id, Receiver{id});
      register_peer(rx_.at(id));
    }
  }

  std::vector<std::string> run() {
    schedule_ticks();
    Time faults_end = clock_.now() + 3s;
    for (Time t = clock_.now() + 200ms; t < faults_end; t += 200ms) timers_.at(t, [this] { fault(); });
    timers_.at(faults_end, [this] { calm(); });
    run_until(faults_end + 4s, clock_, net_, timers_,
              [this](const NodeId& to, const NodeId& from, Wire& m) { deliver(to, from, m); });
    if (violations_.empty()) final_check();
    return violations_;
  }

 private:
  void register_peer(Receiver& r) {
    ++r.generation;
    r.registered = true;
    r.start = sender_.add_peer(r.id, clock_.now());
    net_.send(kOrigin, r.id, MHello{kInc, r.start}, Delivery::stream);
  }

  void schedule_ticks() {
    timers_.at(clock_.now() + kTick, [this] {
      origin_tick();
      for (auto& [id, r] : rx_) receiver_tick(r);
      check();
      schedule_ticks();
    });
  }

  void origin_tick() {
    for (auto n = stopped_ ? 0 : uniform(rng_, 0, 4); n > 0; --n) {
      auto seq = sender_.push(Write{"r", fmt::format("k{}", sender_.next_seq()), WriteKind::put, "", "v", 1});
      for (const auto& [id, r] : rx_)
        if (r.registered) required_[seq][id] = r.generation;
    }
    std::uint64_t first = 0;
    auto batch = sender_.take_sendable(first);
    if (!batch.empty())
      for (const auto& [id, r] : rx_)
        if (r.registered) net_.send(kOrigin, id, MData{kInc, first, batch.size()});
    sender_.settle();
    for (const auto& [peer, start] : sender_.hellos_due(clock_.now()))
      net_.send(kOrigin, peer, MHello{kInc, start}, Delivery::stream);
    for (const auto& re : sender_.tick(clock_.now())) send_resend(re);
  }

  void send_resend(const StreamSender::Resend& re) {
    if (re.reset) net_.send(kOrigin, re.peer, MReset{kInc, re.reset_to}, Delivery::stream);
    else if (!re.writes.empty()) net_.send(kOrigin, re.peer, MData{kInc, re.first, re.writes.size()});
  }

  void receiver_tick(Receiver& r) {
    if (net_.is_paused(r.id)) return;
    for (const auto& g : r.stream->gaps(clock_.now())) net_.send(r.id, kOrigin, MNak{g.from, g.to}, Delivery::stream);
    send_ack(r);
  }

  void send_ack(Receiver& r) {
    auto a = r.stream->ack_point(kOrigin);
    if (!a) return;
    std::uint64_t next = *a + (plant_ ? 1 : 0);  // the plant: acknowledge one write too many
    r.acked = std::max(r.acked.value_or(0), next);
    net_.send(r.id, kOrigin, MAck{next}, Delivery::stream);
  }

  void deliver(const NodeId& to, const NodeId& from, Wire& m) {
    if (to == kOrigin) {
      if (const auto* a = std::get_if<MAck>(&m)) {
        if (rx_.at(from).registered)
          if (auto re = sender_.on_ack(from, a->next, clock_.now())) send_resend(*re);
      } else if (const auto* n = std::get_if<MNak>(&m)) {
        if (rx_.at(from).registered) send_resend(sender_.on_nak(from, n->from, n->to, clock_.now()));
      }
    } else {
      receive(rx_.at(to), m);
    }
    check();
  }

  void receive(Receiver& r, const Wire& m) {
    if (const auto* d = std::get_if<MData>(&m)) {
      for (auto s = d->first; s < d->first + d->count; ++s) r.got.insert(s);
      if (r.stream->on_data(kOrigin, d->inc, d->first, d->count, clock_.now())) send_ack(r);
    } else if (const auto* h = std::get_if<MHello>(&m)) {
      r.stream->on_hello(kOrigin, h->inc, h->start);
      for (std::uint64_t s = 0; s < h->start; ++s) r.got.insert(s);  // before its stream: state transfer's job
    } else if (const auto* x = std::get_if<MReset>(&m)) {
      r.stream->on_reset(kOrigin, x->inc, x->next);
      for (std::uint64_t s = 0; s < x->next; ++s) r.got.insert(s);  // reconciled by anti-entropy
    }
  }

  // One random fault, or none.
  void fault() {
    auto& r = rx_.at(std::string(1, static_cast<char>('b' + uniform(rng_, 0, 2))));
    switch (uniform(rng_, 0, 5)) {
      case 0:
        net_.set_paused(r.id, !net_.is_paused(r.id));
        break;
      case 1:  // membership declares it failed: nothing waits for it any more
        if (r.registered) {
          sender_.remove_peer(r.id);
          r.registered = false;
        } else {
          register_peer(r);
        }
        break;
      case 2:  // it restarts: forgets the stream; membership sees a new incarnation
        r.stream = std::make_unique<StreamReceiver>(10ms);
        r.got.clear();
        r.prefix = 0;
        r.acked.reset();
        if (r.registered) sender_.remove_peer(r.id);
        register_peer(r);
        break;
      default:
        break;
    }
  }

  void calm() {
    net_.set_loss(0);
    net_.set_duplicate(0);
    net_.set_long_delay(0, 0ms);
    stopped_ = true;  // no new writes: the stream drains
    for (auto& [id, r] : rx_) {
      net_.set_paused(id, false);
      if (!r.registered) register_peer(r);
    }
  }

  void check() {
    auto completed = sender_.completed();
    if (completed < last_completed_)
      violation(fmt::format("completed went back from {} to {}", last_completed_, completed));
    if (completed > sender_.next_seq())
      violation(fmt::format("completed {} passed next_seq {}", completed, sender_.next_seq()));
    for (auto s = last_completed_; s < completed; ++s) {
      for (const auto& [id, gen] : required_[s]) {
        const Receiver& r = rx_.at(id);
        if (r.registered && r.generation == gen && !r.got.contains(s))
          violation(fmt::format("write {} completed but {} never got it", s, id));
      }
      required_.erase(s);
    }
    last_completed_ = std::max(last_completed_, completed);
    for (const auto& [id, r] : rx_) {
      auto a = r.stream->ack_point(kOrigin);
      if (a && *a > prefix(r)) violation(fmt::format("{} acknowledges {} but misses write {}", id, *a, prefix(r)));
      auto believed = sender_.acks();
      // Registration itself counts as acknowledging everything below its start.
      auto sent = std::max(r.acked.value_or(0), r.start);
      if (auto it = believed.find(id); it != believed.end() && r.registered && it->second > sent)
        violation(fmt::format("the origin believes {} acked {}, it sent at most {}", id, it->second, sent));
    }
  }

  // The first seq this receiver has not got: everything below it arrived.
  static std::uint64_t prefix(const Receiver& r) {
    while (r.got.contains(r.prefix)) ++r.prefix;
    return r.prefix;
  }

  void final_check() {
    if (sender_.completed() != sender_.next_seq())
      violation(fmt::format("after calm: completed {} of {} writes", sender_.completed(), sender_.next_seq()));
    for (const auto& [id, r] : rx_)
      if (r.stream->ack_point(kOrigin) != sender_.next_seq())
        violation(fmt::format("after calm: {} acknowledges {} of {}", id,
                              r.stream->ack_point(kOrigin).value_or(0), sender_.next_seq()));
  }

  void violation(std::string what) {
    if (violations_.size() < 5) violations_.push_back(fmt::format("t={} ms: {}", to_ms(clock_.now().time_since_epoch()), what));
  }

  std::mt19937_64 rng_;
  SimClock clock_;
  SimTimers timers_;
  SimNetwork<Wire> net_;
  bool plant_;
  StreamSender sender_;
  std::map<NodeId, Receiver> rx_;
  std::map<std::uint64_t, std::map<NodeId, std::uint64_t>> required_;  // seq -> receiver -> generation
  std::uint64_t last_completed_ = 0;
  bool stopped_ = false;
  std::vector<std::string> violations_;
};

}  // namespace

TEST_CASE("stream sim: write-through under loss, duplicates, delays, pauses, drops and restarts") {
  for (auto seed : rg::sim::seeds(200)) {
    auto v = StreamCluster(seed, false).run();
    std::ostringstream why;
    for (const auto& line : v) why << "\n  " << line;
    CHECK_MESSAGE(v.empty(), "seed " << seed << " (replay: RG_SEED=" << seed << ")" << why.str());
  }
}

TEST_CASE("stream sim: the checker catches a receiver that acknowledges a write it did not get") {
  std::size_t caught = 0, runs = 0;
  for (auto seed : rg::sim::seeds(20)) {
    ++runs;
    if (!StreamCluster(seed, true).run().empty()) ++caught;
  }
  // Not every run: since a new peer's first ack resends the tail at once,
  // the write the plant acknowledged early sometimes arrives before the
  // checker looks (3 of 200 seeds went unnoticed when this was written).
  CHECK_MESSAGE(caught * 10 >= runs * 9, "the planted early ack went unnoticed in ", runs - caught, " of ", runs,
                " runs");
}
