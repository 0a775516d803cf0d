// Region storage. Called by Store (and through it by the replication, state
// transfer and anti-entropy code) on the node's event-loop thread.
//
// Layout, chosen for memory (see region.h): every key is one heap block
// (Entry header, key bytes, payload bytes), and each of the kBuckets buckets
// is an open-addressing table of Entry pointers with a parallel byte array of
// hash tags. No per-entry std::string, no hash-node allocation: about 16 B of
// header and 12-24 B of table (8 B pointer + 1 B tag per slot, 3/8 to 3/4
// full) per entry on top of the key and value bytes.
//
// Entries are never removed (a delete leaves a tombstone that must outlive
// older writes), so the tables are insert-only and need no deletion markers.
//
// Canonical state, so equal states have equal bytes and equal digests:
//   - every field is newer than the whole-value version (older ones are
//     dropped as soon as a newer put/del arrives, whichever came first);
//   - kind is `fields` exactly when there is a field, and then the payload is
//     the field list only: the base value is invisible under fields and can
//     never come back (only a newer put/del removes fields, and it replaces
//     the base), so it is not kept;
//   - a tombstone has an empty payload;
//   - an absent key is the same as a tombstone at version 0 (bottom).
#include "grid/region.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <new>
#include <stdexcept>

namespace rg::grid {
namespace {

// Murmur3's 64-bit finaliser: FNV-1a alone mixes its high bits weakly, and
// bucket_of takes the high bits.
std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// Header of one key's heap block; the key bytes and then the payload follow
// it. 16 bytes, so a 16 B key + 100 B value block is a 144 B malloc chunk.
struct Entry {
  Version version;           // last whole-value write (put or del), 0 if none
  std::uint32_t payload_len;
  std::uint32_t key_len : 30;
  std::uint32_t kind : 2;    // EntryKind

  char* key_ptr() { return reinterpret_cast<char*>(this + 1); }
  const char* key_ptr() const { return reinterpret_cast<const char*>(this + 1); }
  std::string_view key() const { return {key_ptr(), key_len}; }
  char* payload_ptr() { return key_ptr() + key_len; }
  std::string_view payload() const { return {key_ptr() + key_len, payload_len}; }
  EntryKind entry_kind() const { return static_cast<EntryKind>(kind); }
};
static_assert(sizeof(Entry) == 16);
constexpr std::size_t kMaxKeyLen = (1u << 30) - 1;

// A field by reference: into an entry's payload, an incoming Write or an
// incoming EntryState. Only valid while those live.
struct FieldRef {
  std::string_view name;
  Version version;
  std::string_view value;
  bool operator==(const FieldRef&) const = default;
};

// Field list encoding in a payload, per field in name order:
// u32 name_len, u32 value_len, u64 version, name bytes, value bytes.
constexpr std::size_t kFieldHeader = 16;

std::size_t encoded_size(const std::vector<FieldRef>& fields) {
  std::size_t n = 0;
  for (const auto& f : fields) n += kFieldHeader + f.name.size() + f.value.size();
  return n;
}

void encode_fields(const std::vector<FieldRef>& fields, char* out) {
  for (const auto& f : fields) {
    auto name_len = static_cast<std::uint32_t>(f.name.size());
    auto value_len = static_cast<std::uint32_t>(f.value.size());
    std::memcpy(out, &name_len, 4);
    std::memcpy(out + 4, &value_len, 4);
    std::memcpy(out + 8, &f.version, 8);
    out += kFieldHeader;
    std::memcpy(out, f.name.data(), f.name.size());
    out += f.name.size();
    std::memcpy(out, f.value.data(), f.value.size());
    out += f.value.size();
  }
}

void decode_fields(std::string_view payload, std::vector<FieldRef>& out) {
  const char* p = payload.data();
  const char* end = p + payload.size();
  while (p < end) {
    std::uint32_t name_len = 0;
    std::uint32_t value_len = 0;
    Version version = 0;
    std::memcpy(&name_len, p, 4);
    std::memcpy(&value_len, p + 4, 4);
    std::memcpy(&version, p + 8, 8);
    p += kFieldHeader;
    out.push_back({{p, name_len}, version, {p + name_len, value_len}});
    p += name_len + value_len;
  }
}

std::vector<FieldRef> fields_of(const Entry& e) {
  std::vector<FieldRef> out;
  if (e.entry_kind() == EntryKind::fields) decode_fields(e.payload(), out);
  return out;
}

// The state an entry should take, by reference, before it is materialised.
// Canonical (see top of file) whenever it is built by make_shape.
struct Shape {
  EntryKind kind = EntryKind::tombstone;
  Version version = 0;
  std::string_view value;        // plain only
  std::vector<FieldRef> fields;  // fields only, sorted by name
};

// Fixes kind/value from the base kind and what is left of the fields.
Shape make_shape(EntryKind base_kind, Version version, std::string_view base_value,
                 std::vector<FieldRef> fields) {
  Shape s;
  s.version = version;
  if (!fields.empty()) {
    s.kind = EntryKind::fields;
    s.fields = std::move(fields);
  } else if (base_kind == EntryKind::plain) {
    s.kind = EntryKind::plain;
    s.value = base_value;
  } else {
    s.kind = EntryKind::tombstone;
  }
  return s;
}

bool same_state(const Entry& e, const Shape& s) {
  if (e.entry_kind() != s.kind || e.version != s.version) return false;
  if (s.kind == EntryKind::fields) return fields_of(e) == s.fields;
  return e.payload() == s.value;
}

std::size_t payload_size(const Shape& s) {
  return s.kind == EntryKind::fields ? encoded_size(s.fields) : s.value.size();
}

Entry* new_entry(std::string_view key, const Shape& s) {
  if (key.size() > kMaxKeyLen) throw std::length_error("rg::grid::Region: key too long");
  std::size_t payload_len = payload_size(s);
  if (payload_len > UINT32_MAX) throw std::length_error("rg::grid::Region: value too long");
  void* mem = ::operator new(sizeof(Entry) + key.size() + payload_len);
  auto* e = new (mem) Entry{s.version, static_cast<std::uint32_t>(payload_len),
                            static_cast<std::uint32_t>(key.size()),
                            static_cast<std::uint32_t>(s.kind)};
  std::memcpy(e->key_ptr(), key.data(), key.size());
  if (s.kind == EntryKind::fields)
    encode_fields(s.fields, e->payload_ptr());
  else
    std::memcpy(e->payload_ptr(), s.value.data(), s.value.size());
  return e;
}

void free_entry(Entry* e) { ::operator delete(e); }

bool is_visible(const Entry& e) { return e.entry_kind() != EntryKind::tombstone; }

// This entry's share of its bucket's digest. Versions identify writes, so the
// value bytes need not be hashed. Summed (mod 2^64) over the bucket: the
// order of writes does not matter, and replacing an entry is -old +new.
std::uint64_t contribution(std::uint64_t kh, const Entry& e) {
  std::uint64_t x = mix64(kh ^ mix64(e.version * 0x9e3779b97f4a7c15ull + e.kind));
  if (e.entry_kind() == EntryKind::fields) {
    std::vector<FieldRef> fields;
    decode_fields(e.payload(), fields);
    for (const auto& f : fields)
      x = mix64(x + mix64(key_hash(f.name) ^ (f.version * 0xd6e8feb86659fd93ull)));
  }
  return x;
}

// Field lists are kept sorted by name; incoming ones may not be, and may even
// repeat a name. Keep the highest version of each name.
void normalise(std::vector<FieldRef>& fields) {
  auto by_name_then_newest = [](const FieldRef& a, const FieldRef& b) {
    return a.name != b.name ? a.name < b.name : a.version > b.version;
  };
  if (std::is_sorted(fields.begin(), fields.end(), by_name_then_newest) &&
      std::adjacent_find(fields.begin(), fields.end(), [](const FieldRef& a, const FieldRef& b) {
        return a.name == b.name;
      }) == fields.end())
    return;
  std::sort(fields.begin(), fields.end(), by_name_then_newest);
  fields.erase(std::unique(fields.begin(), fields.end(),
                           [](const FieldRef& a, const FieldRef& b) { return a.name == b.name; }),
               fields.end());
}

// Union of two sorted field lists, highest version per name (ties keep
// `mine`: equal versions are the same write), minus fields no newer than the
// whole-value version `floor`.
std::vector<FieldRef> union_fields(const std::vector<FieldRef>& mine,
                                   const std::vector<FieldRef>& theirs, Version floor) {
  std::vector<FieldRef> out;
  out.reserve(mine.size() + theirs.size());
  auto keep = [&](const FieldRef& f) {
    if (f.version > floor) out.push_back(f);
  };
  std::size_t i = 0, j = 0;
  while (i < mine.size() || j < theirs.size()) {
    if (j == theirs.size() || (i < mine.size() && mine[i].name < theirs[j].name)) {
      keep(mine[i++]);
    } else if (i == mine.size() || theirs[j].name < mine[i].name) {
      keep(theirs[j++]);
    } else {
      keep(theirs[j].version > mine[i].version ? theirs[j] : mine[i]);
      ++i;
      ++j;
    }
  }
  return out;
}

// One bucket: open addressing with linear probing, at most 3/4 full. A slot
// is empty when its tag is 0; otherwise the tag is 8 bits of the key hash, so
// most probes that miss never touch the entry's memory.
struct Table {
  std::vector<Entry*> slots;
  std::vector<std::uint8_t> tags;
  std::size_t count = 0;
  std::size_t visible = 0;
  std::uint64_t digest = 0;

  static std::uint8_t tag_of(std::uint64_t h) {
    auto t = static_cast<std::uint8_t>(h >> 32);
    return t ? t : 1;
  }

  // Index of the key's slot, or of the empty slot where it would go.
  std::size_t probe(std::string_view key, std::uint64_t h) const {
    std::size_t mask = slots.size() - 1;
    std::uint8_t tag = tag_of(h);
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      if (tags[i] == 0) return i;
      if (tags[i] == tag && slots[i]->key() == key) return i;
    }
  }

  Entry* find(std::string_view key, std::uint64_t h, std::size_t& index) const {
    if (slots.empty()) return nullptr;
    index = probe(key, h);
    return tags[index] ? slots[index] : nullptr;
  }

  void insert(Entry* e, std::uint64_t h) {
    if ((count + 1) * 4 > slots.size() * 3) grow();
    std::size_t i = probe(e->key(), h);
    slots[i] = e;
    tags[i] = tag_of(h);
    ++count;
  }

  void grow() {
    std::vector<Entry*> old = std::move(slots);
    std::size_t cap = old.empty() ? 8 : old.size() * 2;
    slots.assign(cap, nullptr);
    tags.assign(cap, 0);
    for (Entry* e : old) {
      if (!e) continue;
      std::uint64_t h = key_hash(e->key());
      std::size_t i = probe(e->key(), h);
      slots[i] = e;
      tags[i] = tag_of(h);
    }
  }
};

}  // namespace

std::uint64_t key_hash(std::string_view key) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return mix64(h);
}

struct Region::Impl {
  std::array<Table, kBuckets> buckets;
  std::size_t count = 0;
  std::size_t visible = 0;
  std::uint64_t max_lamport = 0;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    for (auto& t : buckets)
      for (Entry* e : t.slots)
        if (e) free_entry(e);
  }

  Table& bucket(std::uint64_t h) { return buckets[h >> (64 - kBucketBits)]; }
  const Table& bucket(std::uint64_t h) const { return buckets[h >> (64 - kBucketBits)]; }

  const Entry* find(std::string_view key) const {
    std::uint64_t h = key_hash(key);
    std::size_t i = 0;
    return bucket(h).find(key, h, i);
  }

  void note(Version v) { max_lamport = std::max(max_lamport, lamport_of(v)); }

  // Makes the entry at slot `i` (or a new one, if `old` is null) take shape
  // `s`, keeping digest and counts in step. Returns false if nothing changed.
  bool store(Table& t, std::size_t i, Entry* old, std::string_view key, std::uint64_t h,
             const Shape& s) {
    if (old && same_state(*old, s)) return false;
    if (!old && s.kind == EntryKind::tombstone && s.version == 0) return false;  // bottom
    Entry* e = nullptr;
    if (old) {
      t.digest -= contribution(h, *old);
      if (is_visible(*old)) {
        --t.visible;
        --visible;
      }
      if (s.kind != EntryKind::fields && old->entry_kind() != EntryKind::fields &&
          old->payload_len == s.value.size()) {
        // Same-size overwrite (the common update): no allocation.
        e = old;
        e->version = s.version;
        e->kind = static_cast<std::uint32_t>(s.kind);
        std::memmove(e->payload_ptr(), s.value.data(), s.value.size());
      } else {
        e = new_entry(key, s);  // before freeing: `s` may point into `old`
        free_entry(old);
        t.slots[i] = e;
      }
    } else {
      e = new_entry(key, s);
      t.insert(e, h);
      ++count;
    }
    t.digest += contribution(h, *e);
    if (is_visible(*e)) {
      ++t.visible;
      ++visible;
    }
    return true;
  }

  bool apply_whole(const Write& w, EntryKind kind) {
    std::uint64_t h = key_hash(w.key);
    Table& t = bucket(h);
    std::size_t i = 0;
    Entry* e = t.find(w.key, h, i);
    if (w.version <= (e ? e->version : 0)) return false;
    std::vector<FieldRef> fields;
    if (e && e->entry_kind() == EntryKind::fields) {
      decode_fields(e->payload(), fields);
      std::erase_if(fields, [&](const FieldRef& f) { return f.version <= w.version; });
    }
    return store(t, i, e, w.key, h, make_shape(kind, w.version, w.value, std::move(fields)));
  }

  bool apply_field(const Write& w) {
    std::uint64_t h = key_hash(w.key);
    Table& t = bucket(h);
    std::size_t i = 0;
    Entry* e = t.find(w.key, h, i);
    Version base = e ? e->version : 0;
    if (w.version <= base) return false;
    std::vector<FieldRef> fields;
    if (e) fields = fields_of(*e);
    auto it = std::lower_bound(fields.begin(), fields.end(), std::string_view(w.field),
                               [](const FieldRef& f, std::string_view n) { return f.name < n; });
    FieldRef nf{w.field, w.version, w.value};
    if (it != fields.end() && it->name == w.field) {
      if (w.version <= it->version) return false;
      *it = nf;
    } else {
      fields.insert(it, nf);
    }
    return store(t, i, e, w.key, h,
                 make_shape(e ? e->entry_kind() : EntryKind::tombstone, base, {},
                            std::move(fields)));
  }

  bool merge(const EntryState& in) {
    note(in.version);
    std::vector<FieldRef> theirs;
    theirs.reserve(in.fields.size());
    for (const auto& f : in.fields) {
      note(f.version);
      theirs.push_back({f.name, f.version, f.value});
    }
    normalise(theirs);

    std::uint64_t h = key_hash(in.key);
    Table& t = bucket(h);
    std::size_t i = 0;
    Entry* e = t.find(in.key, h, i);
    std::vector<FieldRef> mine;
    if (e) mine = fields_of(*e);

    // Higher whole-value version supplies the base; on a tie keep ours (the
    // same version is the same write). An incoming `fields` state carries no
    // base value, which is fine: its fields outrank it.
    EntryKind base_kind = e ? e->entry_kind() : EntryKind::tombstone;
    Version version = e ? e->version : 0;
    std::string_view base_value = e ? e->payload() : std::string_view{};
    if (in.version > version) {
      base_kind = in.kind == EntryKind::plain ? EntryKind::plain : EntryKind::tombstone;
      version = in.version;
      base_value = in.value;
    }
    return store(t, i, e, in.key, h,
                 make_shape(base_kind, version, base_value, union_fields(mine, theirs, version)));
  }
};

namespace {

EntryState state_of(const Entry& e) {
  EntryState s;
  s.key = std::string(e.key());
  s.kind = e.entry_kind();
  s.version = e.version;
  if (e.entry_kind() == EntryKind::fields) {
    for (const auto& f : fields_of(e))
      s.fields.push_back({std::string(f.name), f.version, std::string(f.value)});
  } else {
    s.value = std::string(e.payload());
  }
  return s;
}

}  // namespace

Region::Region() : impl_(std::make_unique<Impl>()) {}
Region::~Region() = default;
Region::Region(Region&&) noexcept = default;
Region& Region::operator=(Region&&) noexcept = default;

bool Region::apply(const Write& w) {
  impl_->note(w.version);
  switch (w.kind) {
    case WriteKind::put: return impl_->apply_whole(w, EntryKind::plain);
    case WriteKind::del: return impl_->apply_whole(w, EntryKind::tombstone);
    case WriteKind::put_field: return impl_->apply_field(w);
  }
  return false;  // unknown kind off the wire: ignore
}

bool Region::merge(const EntryState& e) { return impl_->merge(e); }

std::optional<Value> Region::get(std::string_view key) const {
  const Entry* e = impl_->find(key);
  if (!e || !is_visible(*e)) return std::nullopt;
  Value v;
  v.kind = e->entry_kind();
  v.version = e->version;
  if (e->entry_kind() == EntryKind::fields) {
    for (const auto& f : fields_of(*e)) {
      v.version = std::max(v.version, f.version);
      v.fields.push_back({std::string(f.name), f.version, std::string(f.value)});
    }
  } else {
    v.value = std::string(e->payload());
  }
  return v;
}

std::optional<EntryState> Region::state(std::string_view key) const {
  const Entry* e = impl_->find(key);
  if (!e) return std::nullopt;
  return state_of(*e);
}

std::size_t Region::size() const { return impl_->visible; }
std::size_t Region::entry_count() const { return impl_->count; }
std::uint64_t Region::bucket_digest(unsigned bucket) const {
  return impl_->buckets.at(bucket).digest;
}
std::size_t Region::bucket_entries(unsigned bucket) const {
  return impl_->buckets.at(bucket).count;
}

void Region::export_bucket(unsigned bucket, std::vector<EntryState>& out) const {
  const Table& t = impl_->buckets.at(bucket);
  out.reserve(out.size() + t.count);
  for (const Entry* e : t.slots)
    if (e) out.push_back(state_of(*e));
}

std::vector<std::string> Region::keys(std::string_view prefix, std::size_t limit) const {
  // A max-heap of the `limit` smallest keys so far: O(n log limit), and no
  // copy of every key when the caller wants only a page of them.
  std::vector<std::string_view> heap;
  if (limit == 0) return {};
  for (const auto& t : impl_->buckets) {
    for (const Entry* e : t.slots) {
      if (!e || !is_visible(*e) || !e->key().starts_with(prefix)) continue;
      if (heap.size() < limit) {
        heap.push_back(e->key());
        std::push_heap(heap.begin(), heap.end());
      } else if (e->key() < heap.front()) {
        std::pop_heap(heap.begin(), heap.end());
        heap.back() = e->key();
        std::push_heap(heap.begin(), heap.end());
      }
    }
  }
  std::sort_heap(heap.begin(), heap.end());
  return {heap.begin(), heap.end()};
}

std::uint64_t Region::max_lamport() const { return impl_->max_lamport; }

}  // namespace rg::grid
