// Every decoder of every message type, fed valid, truncated, mutated and
// random bodies: it must answer true or false, never crash, hang or throw.
#include <doctest/doctest.h>

#include <random>
#include <sstream>
#include <type_traits>

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>

#include "grid/admin_protocol.h"
#include "grid/envelope.h"
#include "grid/messages.h"
#include "tests/unit/decoder_corpus.h"

using namespace rg;
using namespace rg::grid;

namespace {

template <class M>
int hammer(const M& sample, std::mt19937_64& rng) {
  auto valid = encode(sample);
  M back;
  REQUIRE(decode(valid, back));
  CHECK(encode(back) == valid);  // round trip is exact
  int accepted = 0;
  for (std::size_t cut = 0; cut < valid.size(); cut += 1 + valid.size() / 64) {
    M m;
    accepted += decode(std::string_view(valid).substr(0, cut), m);
  }
  for (int i = 0; i < 3000; ++i) {
    std::string junk = valid;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips && !junk.empty(); ++f) junk[rng() % junk.size()] = static_cast<char>(rng());
    if (rng() % 3 == 0) junk.resize(rng() % (junk.size() + 1));
    if (rng() % 5 == 0) {
      junk.assign(rng() % 200, '\0');
      for (auto& c : junk) c = static_cast<char>(rng());
    }
    M m;
    accepted += decode(junk, m);
  }
  return accepted;
}

}  // namespace

TEST_CASE("every decoder survives malformed input") {
  std::mt19937_64 rng(7);
  for_each_sample([&](const auto& sample, const char* name) {
    CAPTURE(name);
    hammer(sample, rng);
  });
}

TEST_CASE("decoders: a bool byte other than 0 or 1 is a malformed body, not an abort") {
  rg::grid::QPromise p;
  p.key = "k";
  p.ok = true;
  p.has_value = false;
  auto bytes = encode(p);
  rg::grid::QPromise back;
  REQUIRE(decode(bytes, back));
  CHECK(back.ok);
  // Find the byte that holds `ok`: flip each byte to 2 in turn; none may
  // abort, and the one that is `ok` must make the body malformed.
  int refused = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto bad = bytes;
    bad[i] = 2;
    rg::grid::QPromise m;
    if (!decode(bad, m)) ++refused;
  }
  CHECK(refused >= 2);  // `ok` and `has_value` at least
}

// The codec replaced Boost.Serialization's binary archives (which cost a
// std::locale per message); nodes of both builds must read each other, and
// data dirs written by the older build must load.
TEST_CASE("codec: every message's bytes are those Boost's binary archive wrote, both ways") {
  constexpr unsigned kBoostArchiveFlags =
      boost::archive::no_header | boost::archive::no_codecvt | boost::archive::no_tracking;
  int compared = 0;
  for_each_sample([&](const auto& sample, const char* name) {
    using M = std::decay_t<decltype(sample)>;
    CAPTURE(name);
    std::ostringstream boost_bytes;
    {
      boost::archive::binary_oarchive ar(boost_bytes, kBoostArchiveFlags);
      rg::io(ar, const_cast<M&>(sample));
    }
    auto ours = encode(sample);
    CHECK(boost_bytes.str() == ours);
    M back;
    {
      std::istringstream in(ours);
      boost::archive::binary_iarchive ar(in, kBoostArchiveFlags);
      rg::io(ar, back);
    }
    CHECK(encode(back) == ours);
    ++compared;
  });
  CHECK(compared == 30);  // every sample of decoder_corpus.h
}
