#pragma once
// The unit of replication: one versioned change to one key of a replicated
// region, and the whole state of one key as state transfer and anti-entropy
// exchange it.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/codec.h"
#include "common/ids.h"

namespace rg::grid {

// (lamport << 8) | origin member index. One integer comparison orders any two
// writes the same way on every node: conflicts resolve to the highest.
using Version = std::uint64_t;
inline Version make_version(std::uint64_t lamport, MemberIndex origin) {
  return (lamport << 8) | (origin & 0xff);
}
inline std::uint64_t lamport_of(Version v) { return v >> 8; }
inline MemberIndex origin_of(Version v) { return static_cast<MemberIndex>(v & 0xff); }

enum class WriteKind : std::uint8_t { put = 0, put_field = 1, del = 2 };

struct Write {
  std::string region;
  std::string key;
  WriteKind kind = WriteKind::put;
  std::string field;  // put_field only: only the changed field travels
  std::string value;  // put, put_field
  Version version = 0;

  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, region);
    rg::io(ar, key);
    rg::io(ar, kind);
    if (kind == WriteKind::put_field) rg::io(ar, field);
    if (kind != WriteKind::del) rg::io(ar, value);
    rg::io(ar, version);
  }
};

enum class EntryKind : std::uint8_t { plain = 0, tombstone = 1, fields = 2 };

struct FieldValue {
  std::string name;
  Version version = 0;
  std::string value;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, name);
    rg::io(ar, version);
    rg::io(ar, value);
  }
  bool operator==(const FieldValue&) const = default;
};

// Full state of one key. `version` is the version of the last whole-value
// write (put or del); `fields` holds only fields written after it, sorted by
// name. Visible value: the fields if any, else the plain value (or nothing,
// for a tombstone).
struct EntryState {
  std::string key;
  EntryKind kind = EntryKind::plain;
  Version version = 0;
  std::string value;
  std::vector<FieldValue> fields;

  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, key);
    rg::io(ar, kind);
    rg::io(ar, version);
    rg::io(ar, value);
    rg::io(ar, fields);
  }
  bool operator==(const EntryState&) const = default;
};

}  // namespace rg::grid
