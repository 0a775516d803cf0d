#pragma once
// Boost.Serialization plumbing shared by every message type.
//
// One binary archive (no header) per frame body, so a batch of many messages
// pays the archive's set-up cost once. Strings and vectors go through io()
// below instead of Boost's own container code: their lengths come from the
// network and are never trusted to size an allocation up front (strings grow
// in bounded chunks, vectors one decoded element at a time), so a malformed
// body fails with an exception after at most a few KiB of allocation.
//
// Message types define `template <class Ar> void io(Ar& ar)` calling io() on
// each field, and RG_MESSAGE(T) makes them serializable.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/serialization/level.hpp>
#include <boost/serialization/tracking.hpp>

namespace rg {

inline constexpr unsigned kArchiveFlags =
    boost::archive::no_header | boost::archive::no_codecvt | boost::archive::no_tracking;

// Appends to a std::string without intermediate copies.
class StringSink : public std::streambuf {
 public:
  explicit StringSink(std::string& out) : out_(out) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    out_.append(s, static_cast<std::size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) out_.push_back(static_cast<char>(c));
    return c;
  }

 private:
  std::string& out_;
};

// Reads from a byte range it does not own.
class SpanSource : public std::streambuf {
 public:
  explicit SpanSource(std::string_view in) {
    char* p = const_cast<char*>(in.data());
    setg(p, p, p + in.size());
  }
};

template <class Ar, class T>
  requires std::is_arithmetic_v<T> || std::is_enum_v<T>
void io(Ar& ar, T& v) {
  ar & v;
}

// A bool travels as one byte, 0 or 1 (the archive's own format). Read as a
// byte here: Boost's bool loader asserts on any other value, and builds keep
// assertions on, so an authenticated frame with a 2 there would abort the
// node. Any other value is a malformed body instead.
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

// Appends the archive of `msg` to `out`.
template <class T>
void encode_into(std::string& out, const T& msg) {
  StringSink sink(out);
  boost::archive::binary_oarchive ar(sink, kArchiveFlags);
  io(ar, const_cast<T&>(msg));
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
    SpanSource src(in);
    boost::archive::binary_iarchive ar(src, kArchiveFlags);
    io(ar, msg);
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace rg
