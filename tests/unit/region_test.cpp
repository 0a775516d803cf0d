// Unit tests for rg::grid::Region and rg::grid::Store: the conflict rules of
// replicated regions, the lattice properties anti-entropy relies on, bucket
// digests, state export, and the Store's lamport clock and change callback.
#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "grid/region.h"

using namespace rg::grid;
using rg::MemberIndex;

namespace {

Write put(std::string key, std::string value, Version v) {
  Write w;
  w.region = "r";
  w.key = std::move(key);
  w.kind = WriteKind::put;
  w.value = std::move(value);
  w.version = v;
  return w;
}

Write del(std::string key, Version v) {
  Write w;
  w.region = "r";
  w.key = std::move(key);
  w.kind = WriteKind::del;
  w.version = v;
  return w;
}

Write put_field(std::string key, std::string field, std::string value, Version v) {
  Write w;
  w.region = "r";
  w.key = std::move(key);
  w.kind = WriteKind::put_field;
  w.field = std::move(field);
  w.value = std::move(value);
  w.version = v;
  return w;
}

Version ver(std::uint64_t lamport, MemberIndex origin = 1) { return make_version(lamport, origin); }

// Every entry of a region, tombstones included, keyed by key.
std::map<std::string, EntryState> dump(const Region& r) {
  std::map<std::string, EntryState> out;
  for (unsigned b = 0; b < kBuckets; ++b) {
    std::vector<EntryState> states;
    r.export_bucket(b, states);
    for (auto& s : states) {
      CHECK(bucket_of(s.key) == b);
      out.emplace(s.key, std::move(s));
    }
  }
  return out;
}

std::vector<std::uint64_t> digests(const Region& r) {
  std::vector<std::uint64_t> out;
  for (unsigned b = 0; b < kBuckets; ++b) out.push_back(r.bucket_digest(b));
  return out;
}

// Same entries, digests and counts.
void check_same(const Region& a, const Region& b) {
  CHECK(dump(a) == dump(b));
  CHECK(digests(a) == digests(b));
  CHECK(a.size() == b.size());
  CHECK(a.entry_count() == b.entry_count());
}

// Merges every entry of `from` into `into`.
void merge_all(Region& into, const Region& from) {
  for (unsigned b = 0; b < kBuckets; ++b) {
    std::vector<EntryState> states;
    from.export_bucket(b, states);
    for (const auto& s : states) into.merge(s);
  }
}

// The state a single write describes, for checking apply == merge.
EntryState state_of(const Write& w) {
  EntryState s;
  s.key = w.key;
  if (w.kind == WriteKind::put) {
    s.kind = EntryKind::plain;
    s.version = w.version;
    s.value = w.value;
  } else if (w.kind == WriteKind::del) {
    s.kind = EntryKind::tombstone;
    s.version = w.version;
  } else {
    s.kind = EntryKind::fields;
    s.version = 0;
    s.fields.push_back({w.field, w.version, w.value});
  }
  return s;
}

// Random writes over few keys and fields, so they collide a lot; every write
// has its own version, as next_version guarantees in a real cluster.
std::vector<Write> random_writes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::uint64_t> lamports(n);
  for (std::size_t i = 0; i < n; ++i) lamports[i] = i + 1;
  std::shuffle(lamports.begin(), lamports.end(), rng);
  std::vector<Write> out;
  for (std::size_t i = 0; i < n; ++i) {
    std::string key = "k" + std::to_string(rng() % 6);
    Version v = ver(lamports[i], static_cast<MemberIndex>(rng() % 4));
    switch (rng() % 5) {
      case 0:
      case 1: out.push_back(put(key, "v" + std::to_string(rng() % 1000), v)); break;
      case 2: out.push_back(del(key, v)); break;
      default:
        out.push_back(put_field(key, "f" + std::to_string(rng() % 4),
                                "x" + std::to_string(rng() % 1000), v));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("region: key_hash is a fixed function and bucket_of takes its top bits") {
  // Golden values (FNV-1a 64 then the murmur3 finaliser): these must never
  // change, other nodes and other builds depend on them.
  CHECK(key_hash("") == 0xefd01f60ba992926ull);
  CHECK(key_hash("a") == 0x82a2a958a9bece5bull);
  CHECK(key_hash("user:42") == key_hash(std::string("user:") + "42"));
  CHECK(key_hash("a") != key_hash("b"));
  for (std::string k : {"", "a", "user:42", "zzzzzzzzzzzzzzzz"})
    CHECK(bucket_of(k) == key_hash(k) >> (64 - kBucketBits));
  // Keys spread over all buckets.
  std::set<unsigned> seen;
  for (int i = 0; i < 20000; ++i) seen.insert(bucket_of("key-" + std::to_string(i)));
  CHECK(seen.size() == kBuckets);
}

TEST_CASE("region: put keeps the highest version") {
  Region r;
  CHECK(r.apply(put("k", "a", ver(5))));
  auto v = r.get("k");
  REQUIRE(v);
  CHECK(v->kind == EntryKind::plain);
  CHECK(v->value == "a");
  CHECK(v->version == ver(5));
  CHECK(v->fields.empty());

  CHECK_FALSE(r.apply(put("k", "old", ver(4))));       // older
  CHECK_FALSE(r.apply(put("k", "same", ver(5))));      // same version: same write
  CHECK_FALSE(r.apply(put("k", "a", ver(5))));         // duplicate
  CHECK(r.get("k")->value == "a");
  CHECK(r.apply(put("k", "b", ver(5, 2))));            // same lamport, higher origin
  CHECK(r.get("k")->value == "b");
  CHECK(r.apply(put("k", "longer value", ver(6))));    // size change
  CHECK(r.get("k")->value == "longer value");
  CHECK(r.get("k")->version == ver(6));
  CHECK_FALSE(r.get("other"));
  CHECK(r.size() == 1);
  CHECK(r.entry_count() == 1);
}

TEST_CASE("region: version 0 is below every write, like an absent key") {
  Region r;
  CHECK_FALSE(r.apply(put("k", "a", 0)));
  CHECK_FALSE(r.apply(del("k", 0)));
  CHECK_FALSE(r.apply(put_field("k", "f", "x", 0)));
  CHECK_FALSE(r.merge(EntryState{"k", EntryKind::tombstone, 0, "", {}}));
  CHECK(r.entry_count() == 0);
  CHECK_FALSE(r.state("k"));
}

TEST_CASE("region: values may hold any bytes, keys may be empty") {
  Region r;
  std::string bin("a\0b\xff", 4);
  CHECK(r.apply(put(bin, bin, ver(1))));
  CHECK(r.apply(put("", "empty key", ver(2))));
  CHECK(r.get(bin)->value == bin);
  CHECK(r.get("")->value == "empty key");
  CHECK_FALSE(r.get(std::string("a\0b", 3)));
}

TEST_CASE("region: del leaves a tombstone that beats older writes") {
  Region r;
  CHECK(r.apply(put("k", "a", ver(5))));
  CHECK(r.apply(del("k", ver(7))));
  CHECK_FALSE(r.get("k"));
  auto s = r.state("k");
  REQUIRE(s);
  CHECK(*s == EntryState{"k", EntryKind::tombstone, ver(7), "", {}});
  CHECK(r.size() == 0);
  CHECK(r.entry_count() == 1);

  CHECK_FALSE(r.apply(put("k", "late", ver(6))));
  CHECK_FALSE(r.apply(put_field("k", "f", "late", ver(6))));
  CHECK_FALSE(r.apply(del("k", ver(6))));
  CHECK_FALSE(r.apply(del("k", ver(7))));
  CHECK_FALSE(r.get("k"));

  CHECK(r.apply(put("k", "again", ver(8))));
  CHECK(r.get("k")->value == "again");
  CHECK(r.size() == 1);

  // A delete of a key never seen is kept too: an older put arriving later
  // must not resurrect it.
  CHECK(r.apply(del("never", ver(3))));
  CHECK(r.entry_count() == 2);
  CHECK(r.size() == 1);
  CHECK_FALSE(r.apply(put("never", "x", ver(2))));
  CHECK_FALSE(r.get("never"));
}

TEST_CASE("region: put_field keeps one version per field, newer than the whole value") {
  Region r;
  CHECK(r.apply(put("k", "base", ver(5))));
  CHECK(r.apply(put_field("k", "b", "1", ver(6))));
  CHECK(r.apply(put_field("k", "a", "2", ver(7))));
  auto v = r.get("k");
  REQUIRE(v);
  CHECK(v->kind == EntryKind::fields);
  CHECK(v->version == ver(7));
  CHECK(v->value.empty());
  CHECK(v->fields == std::vector<FieldValue>{{"a", ver(7), "2"}, {"b", ver(6), "1"}});

  CHECK_FALSE(r.apply(put_field("k", "c", "old", ver(4))));   // older than the put
  CHECK_FALSE(r.apply(put_field("k", "c", "same", ver(5))));  // not newer than the put
  CHECK_FALSE(r.apply(put_field("k", "a", "old", ver(6))));   // older than field a
  CHECK_FALSE(r.apply(put_field("k", "a", "dup", ver(7))));   // same version as field a
  CHECK(r.apply(put_field("k", "b", "3", ver(8))));
  CHECK(r.get("k")->fields == std::vector<FieldValue>{{"a", ver(7), "2"}, {"b", ver(8), "3"}});
  CHECK(r.get("k")->version == ver(8));

  auto s = r.state("k");
  REQUIRE(s);
  CHECK(s->kind == EntryKind::fields);
  CHECK(s->version == ver(5));
  CHECK(s->value.empty());  // the base value is hidden under fields for good
  CHECK(s->fields.size() == 2);
  CHECK(r.size() == 1);
}

TEST_CASE("region: put_field on an absent key or a tombstone") {
  Region r;
  CHECK(r.apply(put_field("k", "f", "x", ver(3))));
  auto s = r.state("k");
  REQUIRE(s);
  CHECK(*s == EntryState{"k", EntryKind::fields, 0, "", {{"f", ver(3), "x"}}});
  CHECK(r.get("k")->version == ver(3));

  CHECK(r.apply(del("t", ver(4))));
  CHECK(r.apply(put_field("t", "f", "y", ver(5))));
  auto v = r.get("t");
  REQUIRE(v);
  CHECK(v->kind == EntryKind::fields);
  CHECK(v->fields == std::vector<FieldValue>{{"f", ver(5), "y"}});
  CHECK(r.size() == 2);
}

TEST_CASE("region: a newer put or del drops only the fields it is newer than") {
  Region r;
  CHECK(r.apply(put_field("k", "a", "1", ver(3))));
  CHECK(r.apply(put_field("k", "b", "2", ver(9))));
  CHECK(r.apply(put("k", "whole", ver(6))));  // arrived late: b@9 survives
  auto s = r.state("k");
  REQUIRE(s);
  CHECK(*s == EntryState{"k", EntryKind::fields, ver(6), "", {{"b", ver(9), "2"}}});
  CHECK(r.get("k")->fields == std::vector<FieldValue>{{"b", ver(9), "2"}});

  CHECK(r.apply(del("k", ver(8))));  // only moves the base: still visible through b
  CHECK(*r.state("k") == EntryState{"k", EntryKind::fields, ver(8), "", {{"b", ver(9), "2"}}});
  CHECK(r.get("k"));
  CHECK(r.size() == 1);

  CHECK(r.apply(del("k", ver(10))));
  CHECK(*r.state("k") == EntryState{"k", EntryKind::tombstone, ver(10), "", {}});
  CHECK_FALSE(r.get("k"));
  CHECK(r.size() == 0);

  CHECK(r.apply(put_field("k", "c", "3", ver(11))));
  CHECK(r.apply(put("k", "plain", ver(12))));
  CHECK(*r.state("k") == EntryState{"k", EntryKind::plain, ver(12), "plain", {}});
}

TEST_CASE("region: a field no newer than the whole value never survives, in either order") {
  // Not possible with next_version (one version, one write), but if a field
  // and a put ever shared a version, both orders must still agree.
  Region a, b;
  CHECK(a.apply(put_field("k", "f", "x", ver(5))));
  CHECK(a.apply(put("k", "v", ver(5))));
  CHECK(b.apply(put("k", "v", ver(5))));
  CHECK_FALSE(b.apply(put_field("k", "f", "x", ver(5))));
  CHECK(*a.state("k") == EntryState{"k", EntryKind::plain, ver(5), "v", {}});
  check_same(a, b);
}

TEST_CASE("region: conflicting writes resolve the same in every order") {
  std::vector<Write> writes = {
      put("k", "a", ver(5, 1)),           put("k", "b", ver(5, 2)),
      del("k", ver(4, 3)),                put_field("k", "f", "1", ver(6, 1)),
      put_field("k", "f", "2", ver(6, 3)), put_field("k", "g", "3", ver(3, 1)),
      put_field("k", "h", "4", ver(7, 0)),
  };
  std::vector<std::size_t> order(writes.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  Region first;
  for (auto i : order) first.apply(writes[i]);
  auto expected = EntryState{"k", EntryKind::fields, ver(5, 2), "",
                             {{"f", ver(6, 3), "2"}, {"h", ver(7, 0), "4"}}};
  CHECK(*first.state("k") == expected);
  int orders = 0;
  while (std::next_permutation(order.begin(), order.end())) {
    Region r;
    for (auto i : order) r.apply(writes[i]);
    if (*r.state("k") != expected || r.bucket_digest(bucket_of("k")) !=
                                         first.bucket_digest(bucket_of("k"))) {
      FAIL("order-dependent result");
    }
    ++orders;
  }
  CHECK(orders == 5039);
}

TEST_CASE("region: get reports the highest version and the visible value") {
  Region r;
  CHECK(r.apply(put("k", "v", ver(10))));
  CHECK(r.get("k")->version == ver(10));
  CHECK(r.apply(put_field("k", "f", "x", ver(20))));
  CHECK(r.apply(put_field("k", "e", "y", ver(15))));
  CHECK(r.get("k")->version == ver(20));
}

TEST_CASE("region: merge takes the higher whole value and the union of fields") {
  Region r;
  CHECK(r.apply(put("k", "a", ver(5))));
  CHECK(r.apply(put_field("k", "f", "1", ver(7))));

  // Same base, more fields: union.
  CHECK(r.merge(EntryState{"k", EntryKind::fields, ver(5), "", {{"g", ver(6), "2"}}}));
  CHECK(r.state("k")->fields == std::vector<FieldValue>{{"f", ver(7), "1"}, {"g", ver(6), "2"}});
  // Older field version, older base: nothing changes.
  CHECK_FALSE(r.merge(EntryState{"k", EntryKind::fields, ver(2), "", {{"f", ver(6), "0"}}}));
  CHECK_FALSE(r.merge(EntryState{"k", EntryKind::plain, ver(4), "old", {}}));
  // Its own state again: idempotent.
  CHECK_FALSE(r.merge(*r.state("k")));
  // Newer base drops older fields, keeps newer ones.
  CHECK(r.merge(EntryState{"k", EntryKind::plain, ver(6, 5), "new", {}}));
  CHECK(*r.state("k") == EntryState{"k", EntryKind::fields, ver(6, 5), "", {{"f", ver(7), "1"}}});
  // Newest tombstone wins outright.
  CHECK(r.merge(EntryState{"k", EntryKind::tombstone, ver(9), "", {}}));
  CHECK(*r.state("k") == EntryState{"k", EntryKind::tombstone, ver(9), "", {}});
  CHECK_FALSE(r.get("k"));
  // Merging into an absent key creates it; unsorted incoming fields are fine.
  CHECK(r.merge(EntryState{"n", EntryKind::fields, ver(1), "",
                           {{"z", ver(3), "z"}, {"a", ver(2), "a"}, {"z", ver(2), "old"}}}));
  CHECK(r.state("n")->fields == std::vector<FieldValue>{{"a", ver(2), "a"}, {"z", ver(3), "z"}});
  CHECK(r.max_lamport() == 9);
}

TEST_CASE("region: apply of a write equals merge of the state it describes") {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 50; ++round) {
    auto writes = random_writes(rng, 40);
    Region a, b;
    for (const auto& w : writes) {
      bool ca = a.apply(w);
      bool cb = b.merge(state_of(w));
      CHECK(ca == cb);
    }
    check_same(a, b);
  }
}

TEST_CASE("region: merge is commutative, associative and idempotent (random)") {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 200; ++round) {
    auto writes = random_writes(rng, 1 + rng() % 60);

    // All writes in order, and again shuffled (with duplicates).
    Region all;
    for (const auto& w : writes) all.apply(w);
    auto shuffled = writes;
    shuffled.insert(shuffled.end(), writes.begin(), writes.begin() + rng() % writes.size());
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    Region again;
    for (const auto& w : shuffled) again.apply(w);
    check_same(all, again);

    // Split over three replicas (writes may reach more than one).
    Region a, b, c;
    for (const auto& w : writes) {
      auto pick = rng() % 7 + 1;
      if (pick & 1) a.apply(w);
      if (pick & 2) b.apply(w);
      if (pick & 4) c.apply(w);
    }
    // Commutative: a+b == b+a.
    Region ab, ba;
    merge_all(ab, a);
    merge_all(ab, b);
    merge_all(ba, b);
    merge_all(ba, a);
    check_same(ab, ba);
    // Associative: (a+b)+c == a+(b+c), and both hold every write.
    Region ab_c, bc, a_bc;
    merge_all(ab_c, ab);
    merge_all(ab_c, c);
    merge_all(bc, b);
    merge_all(bc, c);
    merge_all(a_bc, a);
    merge_all(a_bc, bc);
    check_same(ab_c, a_bc);
    check_same(ab_c, all);
    // Idempotent: merging what it already has changes nothing.
    auto before = dump(ab_c);
    for (const auto& [key, s] : before) CHECK_FALSE(ab_c.merge(s));
    check_same(ab_c, all);
    // Anti-entropy style: each side merges the other's export, in place.
    merge_all(a, b);
    merge_all(b, a);
    merge_all(a, c);
    merge_all(c, a);
    merge_all(b, c);
    check_same(a, all);
    check_same(b, all);
    check_same(c, all);
  }
}

TEST_CASE("region: bucket digests are order-independent and track every change") {
  Region a, b;
  CHECK(a.bucket_digest(0) == 0);
  std::vector<Write> writes;
  for (int i = 0; i < 500; ++i) writes.push_back(put("k" + std::to_string(i), "v", ver(i + 1)));
  for (const auto& w : writes) a.apply(w);
  for (auto it = writes.rbegin(); it != writes.rend(); ++it) b.apply(*it);
  CHECK(digests(a) == digests(b));

  unsigned bk = bucket_of("k7");
  auto d = a.bucket_digest(bk);
  CHECK(a.apply(put("k7", "v", ver(1000))));  // same value, newer version
  CHECK(a.bucket_digest(bk) != d);
  CHECK(b.apply(put("k7", "v", ver(1000))));
  CHECK(a.bucket_digest(bk) == b.bucket_digest(bk));
  // Only the touched bucket moves.
  for (unsigned i = 0; i < kBuckets; ++i)
    if (i != bk) CHECK(a.bucket_digest(i) == b.bucket_digest(i));

  // Field versions count, and tombstones are part of the digest.
  CHECK(a.apply(put_field("k8", "f", "x", ver(2000))));
  CHECK(a.bucket_digest(bucket_of("k8")) != b.bucket_digest(bucket_of("k8")));
  CHECK(b.apply(put_field("k8", "f", "x", ver(2000))));
  CHECK(a.bucket_digest(bucket_of("k8")) == b.bucket_digest(bucket_of("k8")));
  CHECK(a.apply(put_field("k8", "f", "x", ver(2001))));  // only a field version moves
  CHECK(a.bucket_digest(bucket_of("k8")) != b.bucket_digest(bucket_of("k8")));
  CHECK(b.apply(put_field("k8", "g", "x", ver(2001))));  // same version, other field
  CHECK(a.bucket_digest(bucket_of("k8")) != b.bucket_digest(bucket_of("k8")));
  CHECK(a.apply(put_field("k8", "g", "x", ver(2001))));
  CHECK(b.apply(put_field("k8", "f", "x", ver(2001))));
  CHECK(a.apply(del("k9", ver(3000))));
  CHECK(a.bucket_digest(bucket_of("k9")) != b.bucket_digest(bucket_of("k9")));
  CHECK(b.apply(del("k9", ver(3000))));
  CHECK(digests(a) == digests(b));

  // Incremental upkeep matches a region built from scratch.
  Region fresh;
  merge_all(fresh, a);
  CHECK(digests(fresh) == digests(a));
}

TEST_CASE("region: a region rebuilt from its exported buckets equals the original") {
  std::mt19937_64 rng(99);
  Region r;
  for (int i = 0; i < 20000; ++i) {  // enough to grow every bucket's table a few times
    std::string key = "key-" + std::to_string(rng() % 15000);
    Version v = ver(i + 1, static_cast<MemberIndex>(rng() % 3));
    switch (rng() % 4) {
      case 0: r.apply(del(key, v)); break;
      case 1: r.apply(put_field(key, "f" + std::to_string(rng() % 3), std::to_string(i), v)); break;
      default: r.apply(put(key, std::string(rng() % 40, 'v'), v));
    }
  }
  Region copy;
  std::size_t exported = 0;
  for (unsigned b = 0; b < kBuckets; ++b) {
    std::vector<EntryState> states;
    r.export_bucket(b, states);
    CHECK(states.size() == r.bucket_entries(b));
    exported += states.size();
    for (const auto& s : states) CHECK(copy.merge(s));
    CHECK(copy.bucket_digest(b) == r.bucket_digest(b));
  }
  CHECK(exported == r.entry_count());
  check_same(copy, r);
  std::size_t tombstones = 0;
  for (int i = 0; i < 15000; ++i) {
    std::string key = "key-" + std::to_string(i);
    auto g1 = r.get(key), g2 = copy.get(key);
    REQUIRE(g1.has_value() == g2.has_value());
    if (g1) {
      CHECK(g1->kind == g2->kind);
      CHECK(g1->version == g2->version);
      CHECK(g1->value == g2->value);
      CHECK(g1->fields == g2->fields);
    } else if (r.state(key)) {
      ++tombstones;
    }
  }
  CHECK(tombstones > 0);
  CHECK(r.size() + tombstones == r.entry_count());
  CHECK(copy.max_lamport() == r.max_lamport());

  // Export appends.
  std::vector<EntryState> out(1);
  r.export_bucket(0, out);
  CHECK(out.size() == 1 + r.bucket_entries(0));
}

TEST_CASE("region: keys lists visible keys by prefix, sorted, up to a limit") {
  Region r;
  for (int i = 0; i < 300; ++i) r.apply(put("user:" + std::to_string(1000 + i), "x", ver(i + 1)));
  r.apply(put("other", "x", ver(400)));
  r.apply(del("user:1000", ver(401)));
  r.apply(put_field("user:0", "f", "x", ver(402)));

  auto k = r.keys("user:", 5);
  CHECK(k == std::vector<std::string>{"user:0", "user:1001", "user:1002", "user:1003", "user:1004"});
  auto all = r.keys("", 1000);
  CHECK(all.size() == 301);
  CHECK(std::is_sorted(all.begin(), all.end()));
  CHECK(all.back() == "user:1299");
  CHECK(r.keys("user:12", 1000).size() == 100);
  CHECK(r.keys("none", 10).empty());
  CHECK(r.keys("user:", 0).empty());
}

TEST_CASE("region: max_lamport and moves") {
  Region r;
  CHECK(r.max_lamport() == 0);
  r.apply(put("a", "x", ver(40, 3)));
  r.apply(put_field("b", "f", "x", ver(50, 1)));
  r.apply(put("a", "old", ver(10, 3)));
  CHECK(r.max_lamport() == 50);
  r.merge(EntryState{"c", EntryKind::fields, ver(20), "", {{"f", ver(60), "x"}}});
  CHECK(r.max_lamport() == 60);

  Region moved(std::move(r));
  CHECK(moved.get("a")->value == "x");
  Region assigned;
  assigned.apply(put("z", "z", ver(1)));
  assigned = std::move(moved);
  CHECK(assigned.size() == 3);
  CHECK_FALSE(assigned.get("z"));
}

TEST_CASE("store: regions are created on first use and listed sorted") {
  Store s;
  CHECK(s.find("b") == nullptr);
  CHECK(s.region_names().empty());
  Region& b = s.region("b");
  s.region("a");
  s.region("c");
  CHECK(&s.region("b") == &b);  // stable, not recreated
  CHECK(s.find("b") == &b);
  CHECK(s.region_names() == std::vector<std::string>{"a", "b", "c"});
  Write w = put("k", "v", ver(1));
  w.region = "d";
  CHECK(s.apply(w));
  CHECK(s.region_names() == std::vector<std::string>{"a", "b", "c", "d"});
  REQUIRE(s.find("d"));
  CHECK(s.find("d")->get("k")->value == "v");
  CHECK(&s.region("b") == &b);  // inserting others does not move it
}

TEST_CASE("store: a raised clock goes on from the floor, never back") {
  Store s;
  s.raise_clock(1000);
  CHECK(s.next_version(2) == make_version(1001, 2));
  s.raise_clock(5);  // below: no effect
  CHECK(s.next_version(2) == make_version(1002, 2));
}

TEST_CASE("store: next_version stays above every version seen") {
  Store s;
  CHECK(s.next_version(3) == make_version(1, 3));
  CHECK(s.next_version(3) == make_version(2, 3));
  Write w = put("k", "v", make_version(100, 7));
  CHECK(s.apply(w));
  CHECK(s.next_version(3) == make_version(101, 3));
  // A losing write still advances the clock.
  w.version = make_version(90, 1);
  w.value = "older";
  w.key = "k";
  CHECK(s.apply(put("k", "v", make_version(200, 1))));
  CHECK_FALSE(s.apply(w));
  CHECK(s.next_version(0) == make_version(201, 0));
  // Merges too, including field versions.
  CHECK(s.merge("other", EntryState{"m", EntryKind::fields, make_version(10, 1), "",
                                    {{"f", make_version(500, 2), "x"}}}));
  CHECK(s.next_version(2) == make_version(501, 2));
  // A version lower than the clock does not move it back.
  CHECK(s.apply(put("low", "x", make_version(5, 1))));
  CHECK(s.next_version(2) == make_version(502, 2));
  Version a = s.next_version(1), b = s.next_version(1);
  CHECK(b > a);
}

TEST_CASE("store: the change callback fires only when state changes") {
  Store s;
  std::vector<std::pair<std::string, std::string>> seen;
  s.on_change([&](const std::string& region, const std::string& key) {
    seen.emplace_back(region, key);
  });
  Write w = put("k", "v", ver(5));
  w.region = "r1";
  CHECK(s.apply(w));
  CHECK_FALSE(s.apply(w));  // duplicate
  w.version = ver(4);
  CHECK_FALSE(s.apply(w));  // older
  CHECK(seen == std::vector<std::pair<std::string, std::string>>{{"r1", "k"}});

  CHECK(s.merge("r2", EntryState{"m", EntryKind::plain, ver(3), "x", {}}));
  CHECK_FALSE(s.merge("r2", EntryState{"m", EntryKind::plain, ver(3), "x", {}}));
  CHECK_FALSE(s.merge("r2", EntryState{"m", EntryKind::plain, ver(2), "y", {}}));
  Write d = del("k", ver(9));
  d.region = "r1";
  CHECK(s.apply(d));
  CHECK(seen == std::vector<std::pair<std::string, std::string>>{
                    {"r1", "k"}, {"r2", "m"}, {"r1", "k"}});
  CHECK(s.find("r1")->size() == 0);
  CHECK(s.find("r2")->size() == 1);
}
