#pragma once
// The binary codec shared by every message type.
//
// The bytes are those Boost.Serialization's binary archives wrote (no
// header, no codecvt, no tracking), which this project used before: each
// arithmetic field in its native bytes, an enum as an int. Writer and
// Reader produce and read exactly that (a unit test compares them with
// Boost's archives on every message sample) at a fraction of the cost:
// Boost's archive builds a std::locale and a pimpl full of containers for
// every message, even with no_codecvt, and that was a fifth of a node's
// CPU per write at 16 clients (docs/benchmarks.md, "The write path").
// Strings and vectors go through io() below: their lengths come from the
// network and are never trusted to size an allocation up front (strings
// grow in bounded chunks, vectors one decoded element at a time), so a
// malformed body fails with an exception after at most a few KiB of
// allocation.
//
// Message types define `template <class Ar> void io(Ar& ar)` calling io() on
// each field.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace rg {

template <class T>
concept Primitive = std::is_arithmetic_v<T> || std::is_enum_v<T>;

// Appends a message's bytes to a string.
class Writer {
 public:
  using is_saving = std::true_type;
  explicit Writer(std::string& out) : out_(out) {}
  template <Primitive T>
  Writer& operator<<(const T& v) {
    if constexpr (std::is_enum_v<T>) {
      const int i = static_cast<int>(v);  // Boost's archives carried enums as int
      save_binary(&i, sizeof i);
    } else {
      save_binary(&v, sizeof v);
    }
    return *this;
  }
  template <Primitive T>
  Writer& operator&(const T& v) { return *this << v; }
  void save_binary(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }

 private:
  std::string& out_;
};

// Reads a message's bytes from a range it does not own; throws
// std::out_of_range past its end.
class Reader {
 public:
  using is_saving = std::false_type;
  explicit Reader(std::string_view in) : in_(in) {}
  template <Primitive T>
  Reader& operator>>(T& v) {
    if constexpr (std::is_enum_v<T>) {
      int i = 0;
      load_binary(&i, sizeof i);
      v = static_cast<T>(i);
    } else {
      load_binary(&v, sizeof v);
    }
    return *this;
  }
  template <Primitive T>
  Reader& operator&(T& v) { return *this >> v; }
  void load_binary(void* p, std::size_t n) {
    if (n == 0) return;
    if (n > in_.size()) throw std::out_of_range("truncated body");
    std::memcpy(p, in_.data(), n);
    in_.remove_prefix(n);
  }

 private:
  std::string_view in_;
};

template <class Ar, class T>
  requires std::is_arithmetic_v<T> || std::is_enum_v<T>
void io(Ar& ar, T& v) {
  ar & v;
}

// A bool travels as one byte, 0 or 1. Any other value is a malformed body
// (Boost's bool loader, used before, asserted on it, and builds keep
// assertions on: an authenticated frame with a 2 there aborted the node).
template <class Ar>
void io(Ar& ar, bool& b) {
  std::uint8_t v = b ? 1 : 0;
  ar & v;
  if constexpr (!Ar::is_saving::value) {
    if (v > 1) throw std::range_error("a bool that is neither 0 nor 1");
    b = v == 1;
  }
}

template <class Ar>
void io(Ar& ar, std::string& s) {
  if constexpr (Ar::is_saving::value) {
    auto n = static_cast<std::uint32_t>(s.size());
    ar << n;
    ar.save_binary(s.data(), n);
  } else {
    std::uint32_t n = 0;
    ar >> n;
    s.clear();
    while (n > 0) {
      std::uint32_t chunk = std::min<std::uint32_t>(n, 64 * 1024);
      auto old = s.size();
      s.resize(old + chunk);
      ar.load_binary(s.data() + old, chunk);
      n -= chunk;
    }
  }
}

template <class Ar, class T>
  requires requires(T t, Ar a) { t.io(a); }
void io(Ar& ar, T& v) {
  v.io(ar);
}

template <class Ar, class T>
void io(Ar& ar, std::vector<T>& v) {
  if constexpr (Ar::is_saving::value) {
    auto n = static_cast<std::uint32_t>(v.size());
    ar << n;
    for (auto& e : v) io(ar, e);
  } else {
    std::uint32_t n = 0;
    ar >> n;
    v.clear();
    v.reserve(std::min<std::uint32_t>(n, 1024));
    for (std::uint32_t i = 0; i < n; ++i) io(ar, v.emplace_back());
  }
}

template <class Ar, class T>
void io(Ar& ar, std::optional<T>& v) {
  bool has = v.has_value();
  io(ar, has);
  if constexpr (Ar::is_saving::value) {
    if (has) io(ar, *v);
  } else {
    if (has) io(ar, v.emplace());
    else v.reset();
  }
}

template <class Ar, class K, class V>
void io(Ar& ar, std::map<K, V>& m) {
  if constexpr (Ar::is_saving::value) {
    auto n = static_cast<std::uint32_t>(m.size());
    ar << n;
    for (auto& [k, v] : m) {
      K key = k;
      io(ar, key);
      io(ar, v);
    }
  } else {
    std::uint32_t n = 0;
    ar >> n;
    m.clear();
    for (std::uint32_t i = 0; i < n; ++i) {
      K key{};
      io(ar, key);
      io(ar, m[key]);
    }
  }
}

// Appends the bytes of `msg` to `out`.
template <class T>
void encode_into(std::string& out, const T& msg) {
  Writer w(out);
  io(w, const_cast<T&>(msg));
}

template <class T>
std::string encode(const T& msg) {
  std::string out;
  encode_into(out, msg);
  return out;
}

// False on any malformed input (never throws, never trusts a length).
template <class T>
bool decode(std::string_view in, T& msg) {
  try {
    Reader r(in);
    io(r, msg);
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace rg
