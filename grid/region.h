#pragma once
// Region: one named replicated map, split into kBuckets hash buckets so state
// transfer and anti-entropy can work one bucket at a time.
//
// Merging is commutative, associative and idempotent (last writer wins by
// Version, per field for field maps), so replicas that saw the same writes in
// any order, any number of times, hold the same state. Each bucket keeps an
// order-independent digest of its entries, updated on every change, so two
// nodes compare a region with kBuckets numbers.
//
// Memory matters here (1M entries must fit in well under 200 MiB with 16 B
// keys and 100 B values): an entry is one allocation holding header, key and
// value. Single-threaded: owned by the node's event loop.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grid/write.h"

namespace rg::grid {

inline constexpr unsigned kBucketBits = 8;
inline constexpr unsigned kBuckets = 1u << kBucketBits;

// Stable across processes, builds and machines (not std::hash).
std::uint64_t key_hash(std::string_view key);
inline unsigned bucket_of(std::string_view key) {
  return static_cast<unsigned>(key_hash(key) >> (64 - kBucketBits));
}

struct Value {
  EntryKind kind = EntryKind::plain;  // plain or fields (tombstones are not returned)
  Version version = 0;                // highest version in the entry
  std::string value;                  // plain
  std::vector<FieldValue> fields;     // fields, sorted by name
};

class Region {
 public:
  Region();
  ~Region();
  Region(Region&&) noexcept;
  Region& operator=(Region&&) noexcept;

  // Returns true if the entry's state changed (false: older or duplicate write).
  bool apply(const Write& w);
  bool merge(const EntryState& e);

  std::optional<Value> get(std::string_view key) const;
  std::optional<EntryState> state(std::string_view key) const;  // including tombstones

  std::size_t size() const;         // visible entries (tombstones excluded)
  std::size_t entry_count() const;  // including tombstones
  std::uint64_t bucket_digest(unsigned bucket) const;
  std::size_t bucket_entries(unsigned bucket) const;
  // Appends the full state of every entry (tombstones included) of a bucket.
  void export_bucket(unsigned bucket, std::vector<EntryState>& out) const;
  // Visible keys starting with prefix, sorted, at most `limit`.
  std::vector<std::string> keys(std::string_view prefix, std::size_t limit) const;
  // Highest lamport counter seen in any version in this region.
  std::uint64_t max_lamport() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// All regions of a node, plus its lamport clock. Single-threaded.
class Store {
 public:
  using ChangeFn = std::function<void(const std::string& region, const std::string& key)>;

  Region& region(const std::string& name);  // created on first use
  const Region* find(const std::string& name) const;
  std::vector<std::string> region_names() const;  // sorted

  // A version for a new local write: above everything this node has seen.
  Version next_version(MemberIndex origin);
  // The clock goes on from at least `floor` (a process's start: see Node).
  void raise_clock(std::uint64_t floor) { lamport_ = std::max(lamport_, floor); }
  // Apply/merge into the named region, advancing the lamport clock and
  // calling the change callback when the visible state changed.
  bool apply(const Write& w);
  bool merge(const std::string& region, const EntryState& e);

  void on_change(ChangeFn fn) { on_change_ = std::move(fn); }

 private:
  std::vector<std::pair<std::string, std::unique_ptr<Region>>> regions_;  // sorted by name
  std::uint64_t lamport_ = 0;
  ChangeFn on_change_;
};

}  // namespace rg::grid
