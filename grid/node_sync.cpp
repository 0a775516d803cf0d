// Node: state transfer to a joining member, and anti-entropy between members.
#include <fmt/format.h>

#include "common/log.h"
#include "grid/envelope.h"
#include "grid/node.h"

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
}  // namespace

// Sends entries of one region to a peer in DigestDiff frames of about
// kDiffBytesPerFrame each.
class Node::DiffSender {
 public:
  DiffSender(Node& node, NodeId peer, const std::string& region)
      : node_(node), peer_(std::move(peer)), diff_{region, {}, {}, false} {}
  void add(EntryState e) {
    bytes_ += entry_bytes(e);
    diff_.entries.push_back(std::move(e));
    if (bytes_ >= kDiffBytesPerFrame) flush();
  }
  void flush() {
    if (diff_.entries.empty()) return;
    node_.send_peer(peer_, MsgType::digest_diff, diff_);
    diff_.entries.clear();
    bytes_ = 0;
  }

 private:
  Node& node_;
  NodeId peer_;
  DigestDiff diff_;
  std::size_t bytes_ = 0;
};

std::uint64_t Node::entry_stamp(const EntryState& e) {
  std::uint64_t h = mix(static_cast<std::uint64_t>(e.kind), e.version);
  for (const auto& f : e.fields) h = mix(mix(h, key_hash(f.name)), f.version);
  return h;
}

void Node::send_stamps(const NodeId& peer, const std::string& region, const std::vector<std::uint32_t>& buckets) {
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
      send_peer(peer, MsgType::key_stamps, out);
      out.buckets.clear();
      out.keys.clear();
      bytes = 0;
    }
  }
  if (!out.buckets.empty()) send_peer(peer, MsgType::key_stamps, out);
}

void Node::sync_tick(Time now) {
  if (transfer_.synced || transfer_.copying) return;
  // Pick a donor: an alive member that holds a full copy.
  for (const auto& id : membership_.alive()) {
    if (!donors_.count(id)) continue;
    transfer_.copying = true;
    transfer_.donor = id;
    if (transfer_.buckets_total == 0) {
      log::info("+sync-start from {}", id);
      send_peer(id, MsgType::sync_request, SyncRequest{});
    } else {
      log::info("+sync-resume from {} at {}/{} buckets", id, transfer_.buckets_done, transfer_.buckets_total);
      request_buckets();
    }
    return;
  }
  if (now >= sync_deadline_) {
    // Nobody with data answered within the failure timeout: we are among the
    // first members, and an empty grid is the full copy.
    transfer_.synced = true;
    transfer_.finished = now;
    log::info("+synced (no member with data found: starting empty)");
    for (const auto& id : donors_) send_digests(id);
  }
}

void Node::request_buckets() {
  while (transfer_.copying && sync_inflight_.size() < kBucketsInFlight && !sync_todo_.empty()) {
    auto b = sync_todo_.front();
    sync_todo_.pop_front();
    sync_inflight_.insert(b);
    send_peer(transfer_.donor, MsgType::bucket_request, BucketRequest{b.first, b.second});
  }
  if (transfer_.copying && sync_inflight_.empty() && sync_todo_.empty()) {
    transfer_.copying = false;
    transfer_.synced = true;
    transfer_.finished = Clock::now();
    log::info("+synced from {}: {} entries in {} buckets in {} ms", transfer_.donor, transfer_.entries,
              transfer_.buckets_total, to_ms(transfer_.finished - transfer_.started));
  }
}

void Node::send_digests(const NodeId& peer) {
  ++counters_.anti_entropy_rounds;
  Digests d;
  for (const auto& name : store_.region_names()) {
    RegionDigest rd{name, {}};
    rd.buckets.resize(kBuckets);
    const auto& r = store_.region(name);
    for (unsigned b = 0; b < kBuckets; ++b) rd.buckets[b] = r.bucket_digest(b);
    d.regions.push_back(std::move(rd));
  }
  send_peer(peer, MsgType::digests, d);
}

void Node::on_sync_message(MsgType type, const Sender& from, std::string_view body, Time) {
  auto bad = [&] { ++counters_.decode_errors; };

  switch (type) {
    case MsgType::sync_request: {
      SyncRegions reply;
      for (const auto& name : store_.region_names())
        reply.regions.push_back(RegionInfo{name, store_.region(name).entry_count()});
      send_peer(from.node, MsgType::sync_regions, reply);
      log::info("+sync-donor to {}: {} regions", from.node, reply.regions.size());
      return;
    }
    case MsgType::sync_regions: {
      Envelope<SyncRegions> e;
      if (!decode(body, e)) return bad();
      if (!transfer_.copying || transfer_.donor != from.node) return;
      for (const auto& r : e.msg.regions)
        for (std::uint32_t b = 0; b < kBuckets; ++b) sync_todo_.emplace_back(r.name, b);
      transfer_.buckets_total = sync_todo_.size();
      request_buckets();
      return;
    }
    case MsgType::bucket_request: {
      Envelope<BucketRequest> e;
      if (!decode(body, e) || e.msg.bucket >= kBuckets) return bad();
      std::vector<EntryState> all;
      if (const Region* r = store_.find(e.msg.region)) r->export_bucket(e.msg.bucket, all);
      BucketData out{e.msg.region, e.msg.bucket, false, {}};
      std::size_t i = 0;
      do {
        std::size_t j = std::min(all.size(), i + kEntriesPerFrame);
        out.entries.assign(std::make_move_iterator(all.begin() + i), std::make_move_iterator(all.begin() + j));
        out.last = j == all.size();
        send_peer(from.node, MsgType::bucket_data, out);
        i = j;
      } while (i < all.size());
      return;
    }
    case MsgType::bucket_data: {
      Envelope<BucketData> e;
      if (!decode(body, e)) return bad();
      for (const auto& entry : e.msg.entries) store_.merge(e.msg.region, entry);
      transfer_.entries += e.msg.entries.size();
      if (e.msg.last && sync_inflight_.erase({e.msg.region, e.msg.bucket})) {
        ++transfer_.buckets_done;
        request_buckets();
      }
      return;
    }
    case MsgType::digests: {
      // Step 1 -> 2: name our keys in every bucket whose digest differs.
      Envelope<Digests> e;
      if (!decode(body, e)) return bad();
      std::set<std::string> theirs;
      for (const auto& rd : e.msg.regions) {
        if (rd.buckets.size() != kBuckets) return bad();
        theirs.insert(rd.name);
        const Region* r = store_.find(rd.name);
        std::vector<std::uint32_t> differ;
        for (std::uint32_t b = 0; b < kBuckets; ++b)
          if ((r ? r->bucket_digest(b) : 0) != rd.buckets[b]) differ.push_back(b);
        send_stamps(from.node, rd.name, differ);
      }
      for (const auto& name : store_.region_names()) {
        if (theirs.count(name)) continue;
        std::vector<std::uint32_t> all;
        const auto& r = store_.region(name);
        for (std::uint32_t b = 0; b < kBuckets; ++b)
          if (r.bucket_entries(b) > 0) all.push_back(b);
        send_stamps(from.node, name, all);
      }
      return;
    }
    case MsgType::key_stamps: {
      // Step 2 -> 3: send what they lack or hold differently; ask for the same.
      Envelope<KeyStamps> e;
      if (!decode(body, e)) return bad();
      for (auto b : e.msg.buckets)
        if (b >= kBuckets) return bad();
      std::map<std::string_view, std::uint64_t> theirs;
      for (const auto& k : e.msg.keys) theirs.emplace(k.key, k.stamp);
      const Region* r = store_.find(e.msg.region);
      DiffSender give(*this, from.node, e.msg.region);
      std::vector<EntryState> mine;
      for (auto b : e.msg.buckets) {
        mine.clear();
        if (r) r->export_bucket(b, mine);
        for (auto& entry : mine) {
          auto it = theirs.find(entry.key);
          if (it == theirs.end() || it->second != entry_stamp(entry)) give.add(std::move(entry));
        }
      }
      give.flush();
      // Ask for every key we lack or hold differently: merging both copies
      // on both sides leaves the same entry everywhere.
      Want want{e.msg.region, {}};
      for (const auto& k : e.msg.keys) {
        auto own = r ? r->state(k.key) : std::nullopt;
        if (!own || entry_stamp(*own) != k.stamp) want.keys.push_back(k.key);
      }
      if (!want.keys.empty()) send_peer(from.node, MsgType::want, want);
      return;
    }
    case MsgType::want: {
      Envelope<Want> e;
      if (!decode(body, e)) return bad();
      const Region* r = store_.find(e.msg.region);
      if (!r) return;
      DiffSender give(*this, from.node, e.msg.region);
      for (const auto& key : e.msg.keys)
        if (auto st = r->state(key)) give.add(std::move(*st));
      give.flush();
      return;
    }
    case MsgType::digest_diff: {
      Envelope<DigestDiff> e;
      if (!decode(body, e)) return bad();
      std::size_t changed = 0;
      for (const auto& entry : e.msg.entries) changed += store_.merge(e.msg.region, entry) ? 1 : 0;
      counters_.entries_reconciled += changed;
      if (changed) log::info("+reconciled {} entries of {} from {}", changed, e.msg.region, from.node);
      return;
    }
    default:
      return;
  }
}

}  // namespace rg::grid
