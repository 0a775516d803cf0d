// Node: state transfer to a joining member, and anti-entropy between members.
#include <fmt/format.h>

#include "common/log.h"
#include "grid/envelope.h"
#include "grid/node.h"

namespace rg::grid {

namespace {
constexpr std::size_t kBucketsInFlight = 4;
constexpr std::size_t kEntriesPerFrame = 8192;
constexpr std::size_t kDiffBytesPerFrame = 4 * 1024 * 1024;

std::size_t entry_bytes(const EntryState& e) {
  std::size_t n = e.key.size() + e.value.size() + 24;
  for (const auto& f : e.fields) n += f.name.size() + f.value.size() + 16;
  return n;
}
}  // namespace

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
  // Sends the entries of `buckets` of `region` to `peer`, cut into frames.
  auto send_diff = [&](const std::string& region, const std::vector<std::uint32_t>& buckets, bool reply) {
    const Region* r = store_.find(region);
    DigestDiff diff{region, {}, {}, reply};
    std::size_t bytes = 0;
    std::vector<EntryState> tmp;
    for (auto b : buckets) {
      tmp.clear();
      if (r) r->export_bucket(b, tmp);
      diff.buckets.push_back(b);
      for (auto& e : tmp) {
        bytes += entry_bytes(e);
        diff.entries.push_back(std::move(e));
      }
      if (bytes >= kDiffBytesPerFrame) {
        send_peer(from.node, MsgType::digest_diff, diff);
        diff.buckets.clear();
        diff.entries.clear();
        bytes = 0;
      }
    }
    if (!diff.buckets.empty()) send_peer(from.node, MsgType::digest_diff, diff);
  };

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
        if (!differ.empty()) send_diff(rd.name, differ, true);
      }
      // Regions they do not have at all.
      for (const auto& name : store_.region_names()) {
        if (theirs.count(name)) continue;
        std::vector<std::uint32_t> all;
        const auto& r = store_.region(name);
        for (std::uint32_t b = 0; b < kBuckets; ++b)
          if (r.bucket_entries(b) > 0) all.push_back(b);
        if (!all.empty()) send_diff(name, all, false);
      }
      return;
    }
    case MsgType::digest_diff: {
      Envelope<DigestDiff> e;
      if (!decode(body, e)) return bad();
      for (auto b : e.msg.buckets)
        if (b >= kBuckets) return bad();
      // Answer first with what we had, so the merge below does not echo
      // their own entries back to them.
      if (e.msg.reply) send_diff(e.msg.region, e.msg.buckets, false);
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
