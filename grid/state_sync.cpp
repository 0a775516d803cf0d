// StateSync: state transfer to a joining member, and anti-entropy between
// members (both ends of each).
#include "grid/state_sync.h"

#include <map>

#include <fmt/format.h>

#include "common/log.h"

namespace rg::grid {

namespace {
constexpr std::size_t kBucketsInFlight = 4;
constexpr std::size_t kEntriesPerFrame = 1024;
constexpr std::size_t kDiffBytesPerFrame = 4 * 1024 * 1024;

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

std::size_t entry_bytes(const EntryState& e) {
  std::size_t n = e.key.size() + e.value.size() + 24;
  for (const auto& f : e.fields) n += f.name.size() + f.value.size() + 16;
  return n;
}

// What anti-entropy compares per key: the entry's versions, fields included.
std::uint64_t entry_stamp(const EntryState& e) {
  std::uint64_t h = mix(static_cast<std::uint64_t>(e.kind), e.version);
  for (const auto& f : e.fields) h = mix(mix(h, key_hash(f.name)), f.version);
  return h;
}
}  // namespace

// Sends entries of one region to a peer in DigestDiff frames of about
// kDiffBytesPerFrame each.
class StateSync::DiffSender {
 public:
  DiffSender(PeerLinks& links, NodeId peer, const std::string& region)
      : links_(links), peer_(std::move(peer)), diff_{region, {}, {}, false} {}
  void add(EntryState e) {
    bytes_ += entry_bytes(e);
    diff_.entries.push_back(std::move(e));
    if (bytes_ >= kDiffBytesPerFrame) flush();
  }
  void flush() {
    if (diff_.entries.empty()) return;
    links_.send(peer_, MsgType::digest_diff, diff_);
    diff_.entries.clear();
    bytes_ = 0;
  }

 private:
  PeerLinks& links_;
  NodeId peer_;
  DigestDiff diff_;
  std::size_t bytes_ = 0;
};

StateSync::StateSync(NodeContext& ctx, Store& store, const Membership& membership, PeerLinks& links)
    : ctx_(ctx), store_(store), membership_(membership), links_(links) {}

void StateSync::start(Time now) {
  deadline_ = now + ctx_.config.failure_timeout;
  transfer_.started = now;
  next_anti_entropy_ = now + ctx_.config.anti_entropy_interval;
}

void StateSync::heard(const NodeId& peer, bool holds_full_copy) {
  if (!holds_full_copy) {
    donors_.erase(peer);
    return;
  }
  // Both of us hold data now: whatever either side acknowledged while the
  // other was not in its view (a simultaneous start, a partition seen as a
  // restart) is reconciled at once.
  if (donors_.insert(peer).second && transfer_.synced) send_digests(peer);
}

void StateSync::restored(const NodeId& peer, Time now) {
  send_digests(peer);
  follow_ups_[peer] = FollowUp{now + 2 * ctx_.config.failure_timeout, 2};
}

void StateSync::lost(const NodeId& peer) {
  donors_.erase(peer);
  follow_ups_.erase(peer);
  if (!transfer_.copying || transfer_.donor != peer) return;
  log::warn("state transfer donor {} is gone; choosing another", peer);
  transfer_.copying = false;
  for (const auto& b : inflight_) todo_.push_front(b);
  inflight_.clear();
}

void StateSync::tick(Time now, Time last_write) {
  if (!transfer_.synced && !transfer_.copying) {
    for (const auto& id : membership_.alive()) {  // pick a donor: an alive member with a full copy
      if (!donors_.count(id)) continue;
      transfer_.copying = true;
      transfer_.donor = id;
      if (transfer_.buckets_total == 0) {
        log::info("+sync-start from {}", id);
        links_.send(id, MsgType::sync_request, SyncRequest{});
      } else {
        log::info("+sync-resume from {} at {}/{} buckets", id, transfer_.buckets_done, transfer_.buckets_total);
        request_buckets();
      }
      break;
    }
    if (!transfer_.copying && now >= deadline_) {
      // Nobody with data answered within the failure timeout: we are among
      // the first members, and an empty grid is the full copy.
      transfer_.synced = true;
      transfer_.finished = now;
      log::info("+synced (no member with data found: starting empty)");
      for (const auto& id : donors_) send_digests(id);
    }
  }
  for (auto it = follow_ups_.begin(); it != follow_ups_.end();) {
    auto& f = it->second;
    if (now >= f.at && transfer_.synced) {
      send_digests(it->first);
      f.at = now + 4 * ctx_.config.failure_timeout;  // the second one after the link's own timeout twice over
      if (--f.left == 0) {
        it = follow_ups_.erase(it);
        continue;
      }
    }
    ++it;
  }
  if (now < next_anti_entropy_) return;
  next_anti_entropy_ = now + ctx_.config.anti_entropy_interval;
  // The safety net only, while writes are quiet: under load every digest
  // differs because of writes in flight (which the stream repairs), and a
  // round would copy every entry to compare stamps. Heals, resets and
  // members that start holding data trigger their own rounds.
  auto alive = membership_.alive();
  bool quiet = now - last_write > ctx_.config.anti_entropy_interval / 2;
  if (!alive.empty() && transfer_.synced && quiet) send_digests(alive[anti_entropy_turn_++ % alive.size()]);
}

void StateSync::request_buckets() {
  while (transfer_.copying && inflight_.size() < kBucketsInFlight && !todo_.empty()) {
    auto b = todo_.front();
    todo_.pop_front();
    inflight_.insert(b);
    links_.send(transfer_.donor, MsgType::bucket_request, BucketRequest{b.first, b.second});
  }
  if (transfer_.copying && inflight_.empty() && todo_.empty()) {
    transfer_.copying = false;
    transfer_.synced = true;
    transfer_.finished = Clock::now();
    log::info("+synced from {}: {} entries in {} buckets in {} ms", transfer_.donor, transfer_.entries,
              transfer_.buckets_total, to_ms(transfer_.finished - transfer_.started));
  }
}

void StateSync::send_digests(const NodeId& peer) {
  ++ctx_.counters.anti_entropy_rounds;
  Digests d;
  for (const auto& name : store_.region_names()) {
    RegionDigest rd{name, {}};
    rd.buckets.resize(kBuckets);
    const auto& r = store_.region(name);
    for (unsigned b = 0; b < kBuckets; ++b) rd.buckets[b] = r.bucket_digest(b);
    d.regions.push_back(std::move(rd));
  }
  links_.send(peer, MsgType::digests, d);
}

void StateSync::send_stamps(const NodeId& peer, const std::string& region, const std::vector<std::uint32_t>& buckets) {
  if (buckets.empty()) return;
  const Region* r = store_.find(region);
  KeyStamps out{region, {}, {}};
  std::vector<EntryState> tmp;
  std::size_t bytes = 0;
  for (auto b : buckets) {
    out.buckets.push_back(b);
    tmp.clear();
    if (r) r->export_bucket(b, tmp);
    for (auto& e : tmp) {
      bytes += e.key.size() + 12;
      out.keys.push_back(KeyStamp{std::move(e.key), entry_stamp(e)});
    }
    if (bytes >= kDiffBytesPerFrame) {
      links_.send(peer, MsgType::key_stamps, out);
      out.buckets.clear();
      out.keys.clear();
      bytes = 0;
    }
  }
  if (!out.buckets.empty()) links_.send(peer, MsgType::key_stamps, out);
}

void StateSync::on_message(MsgType type, const Sender& from, std::string_view body) {
  auto bad = [&] { ++ctx_.counters.decode_errors; };
  auto get = [&](auto& e) { return decode(body, e) || (bad(), false); };
  switch (type) {
    case MsgType::sync_request: {
      SyncRegions reply;
      for (const auto& name : store_.region_names())
        reply.regions.push_back(RegionInfo{name, store_.region(name).entry_count()});
      links_.send(from.node, MsgType::sync_regions, reply);
      log::info("+sync-donor to {}: {} regions", from.node, reply.regions.size());
      return;
    }
    case MsgType::sync_regions: {
      Envelope<SyncRegions> e;
      if (!get(e) || !transfer_.copying || transfer_.donor != from.node) return;
      for (const auto& r : e.msg.regions)
        for (std::uint32_t b = 0; b < kBuckets; ++b) todo_.emplace_back(r.name, b);
      transfer_.buckets_total = todo_.size();
      return request_buckets();
    }
    case MsgType::bucket_request: {
      Envelope<BucketRequest> e;
      if (get(e)) answer_buckets(from.node, e.msg);
      return;
    }
    case MsgType::bucket_data: {
      Envelope<BucketData> e;
      if (!get(e)) return;
      for (const auto& entry : e.msg.entries) store_.merge(e.msg.region, entry);
      transfer_.entries += e.msg.entries.size();
      if (e.msg.last && inflight_.erase({e.msg.region, e.msg.bucket})) {
        ++transfer_.buckets_done;
        request_buckets();
      }
      return;
    }
    case MsgType::digests: {
      Envelope<Digests> e;
      if (get(e)) on_digests(from.node, e.msg);
      return;
    }
    case MsgType::key_stamps: {
      Envelope<KeyStamps> e;
      if (get(e)) on_stamps(from.node, e.msg);
      return;
    }
    case MsgType::want: {
      Envelope<Want> e;
      if (!get(e)) return;
      const Region* r = store_.find(e.msg.region);
      if (!r) return;
      DiffSender give(links_, from.node, e.msg.region);
      for (const auto& key : e.msg.keys)
        if (auto st = r->state(key)) give.add(std::move(*st));
      return give.flush();
    }
    case MsgType::digest_diff: {
      Envelope<DigestDiff> e;
      if (!get(e)) return;
      std::size_t changed = 0;
      for (const auto& entry : e.msg.entries) changed += store_.merge(e.msg.region, entry) ? 1 : 0;
      ctx_.counters.entries_reconciled += changed;
      if (changed) log::info("+reconciled {} entries of {} from {}", changed, e.msg.region, from.node);
      return;
    }
    default:
      return;
  }
}

void StateSync::answer_buckets(const NodeId& peer, const BucketRequest& m) {
  if (m.bucket >= kBuckets) {
    ++ctx_.counters.decode_errors;
    return;
  }
  std::vector<EntryState> all;
  if (const Region* r = store_.find(m.region)) r->export_bucket(m.bucket, all);
  BucketData out{m.region, m.bucket, false, {}};
  std::size_t i = 0;
  do {
    std::size_t j = std::min(all.size(), i + kEntriesPerFrame);
    out.entries.assign(std::make_move_iterator(all.begin() + i), std::make_move_iterator(all.begin() + j));
    out.last = j == all.size();
    links_.send(peer, MsgType::bucket_data, out);
    i = j;
  } while (i < all.size());
}

// Step 1 -> 2: name our keys in every bucket whose digest differs.
void StateSync::on_digests(const NodeId& peer, const Digests& m) {
  std::set<std::string> theirs;
  for (const auto& rd : m.regions)
    if (rd.buckets.size() != kBuckets) {
      ++ctx_.counters.decode_errors;
      return;
    }
  for (const auto& rd : m.regions) {
    theirs.insert(rd.name);
    const Region* r = store_.find(rd.name);
    std::vector<std::uint32_t> differ;
    for (std::uint32_t b = 0; b < kBuckets; ++b)
      if ((r ? r->bucket_digest(b) : 0) != rd.buckets[b]) differ.push_back(b);
    send_stamps(peer, rd.name, differ);
  }
  for (const auto& name : store_.region_names()) {
    if (theirs.count(name)) continue;
    std::vector<std::uint32_t> all;
    const auto& r = store_.region(name);
    for (std::uint32_t b = 0; b < kBuckets; ++b)
      if (r.bucket_entries(b) > 0) all.push_back(b);
    send_stamps(peer, name, all);
  }
}

// Step 2 -> 3: send what they lack or hold differently; ask for the same.
void StateSync::on_stamps(const NodeId& peer, const KeyStamps& m) {
  for (auto b : m.buckets)
    if (b >= kBuckets) {
      ++ctx_.counters.decode_errors;
      return;
    }
  std::map<std::string_view, std::uint64_t> theirs;
  for (const auto& k : m.keys) theirs.emplace(k.key, k.stamp);
  const Region* r = store_.find(m.region);
  DiffSender give(links_, peer, m.region);
  std::vector<EntryState> mine;
  for (auto b : m.buckets) {
    mine.clear();
    if (r) r->export_bucket(b, mine);
    for (auto& entry : mine) {
      auto it = theirs.find(entry.key);
      if (it == theirs.end() || it->second != entry_stamp(entry)) give.add(std::move(entry));
    }
  }
  give.flush();
  // Ask for every key we lack or hold differently: merging both copies on
  // both sides leaves the same entry everywhere.
  Want want{m.region, {}};
  for (const auto& k : m.keys) {
    auto own = r ? r->state(k.key) : std::nullopt;
    if (!own || entry_stamp(*own) != k.stamp) want.keys.push_back(k.key);
  }
  if (!want.keys.empty()) links_.send(peer, MsgType::want, want);
}

}  // namespace rg::grid
