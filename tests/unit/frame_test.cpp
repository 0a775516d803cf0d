#include <doctest/doctest.h>

#include <random>

#include "common/codec.h"
#include "common/frame.h"
#include "common/ids.h"

using namespace rg;

namespace {
struct Sample {
  std::uint64_t n = 0;
  std::string s;
  std::vector<std::string> list;
  std::optional<std::uint32_t> maybe;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, n);
    rg::io(ar, s);
    rg::io(ar, list);
    rg::io(ar, maybe);
  }
};
}  // namespace

TEST_CASE("frame round trip and every rejection") {
  FrameAuth auth("c1", "secret");
  std::string frame;
  auth.append(frame, 7, "hello");
  FrameHeader h;
  std::string_view body;
  REQUIRE(auth.open(frame, 100, h, body) == FrameError::ok);
  CHECK(h.type == 7);
  CHECK(body == "hello");

  CHECK(auth.open(frame, 4, h, body) == FrameError::too_large);
  CHECK(auth.open(std::string_view(frame).substr(0, frame.size() - 1), 100, h, body) ==
        FrameError::truncated);
  CHECK(auth.open(std::string_view(frame).substr(0, 10), 100, h, body) == FrameError::truncated);

  std::string forged = frame;
  forged[kHeaderSize] ^= 1;
  CHECK(auth.open(forged, 100, h, body) == FrameError::bad_mac);
  std::string bad_magic = frame;
  bad_magic[0] = 'X';
  CHECK(auth.open(bad_magic, 100, h, body) == FrameError::bad_magic);
  std::string bad_version = frame;
  bad_version[4] = 9;
  CHECK(auth.open(bad_version, 100, h, body) == FrameError::bad_version);

  FrameAuth other_secret("c1", "other");
  CHECK(other_secret.open(frame, 100, h, body) == FrameError::bad_mac);
  FrameAuth other_cluster("c2", "secret");
  CHECK(other_cluster.open(frame, 100, h, body) == FrameError::wrong_cluster);
}

TEST_CASE("codec round trip") {
  Sample a{42, "abc", {"x", "", std::string(100000, 'z')}, 9};
  auto bytes = encode(a);
  Sample b;
  REQUIRE(decode(bytes, b));
  CHECK(b.n == 42);
  CHECK(b.s == "abc");
  CHECK(b.list == a.list);
  CHECK(b.maybe == 9u);
}

TEST_CASE("codec rejects every truncation and survives random garbage") {
  Sample a{1, "hello", {"a", "b"}, std::nullopt};
  auto bytes = encode(a);
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    Sample b;
    CHECK_FALSE(decode(std::string_view(bytes).substr(0, cut), b));
  }
  std::mt19937_64 rng(1234);
  int decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 64, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    // Flip bytes of a valid encoding too: lengths become huge or wrong.
    if (i % 2) {
      junk = bytes;
      junk[rng() % junk.size()] = static_cast<char>(rng());
    }
    Sample b;
    decoded += decode(junk, b) ? 1 : 0;  // must return, never crash or allocate wildly
  }
  CHECK(decoded < 20000);
}

TEST_CASE("endpoints, ids and topology") {
  CHECK(valid_node_id("n1"));
  CHECK(valid_node_id("a-b-0"));
  CHECK_FALSE(valid_node_id(""));
  CHECK_FALSE(valid_node_id("N1"));
  CHECK_FALSE(valid_node_id(std::string(33, 'a')));
  CHECK_FALSE(valid_node_id("a_b"));

  auto e = parse_endpoint("127.0.0.1:7401");
  REQUIRE(e);
  CHECK(e->port == 7401);
  CHECK(e->str() == "127.0.0.1:7401");
  std::string why;
  CHECK_FALSE(parse_endpoint("127.0.0.1", &why));
  CHECK(why.find("HOST:PORT") != std::string::npos);
  CHECK_FALSE(parse_endpoint("127.0.0.1:0"));
  CHECK_FALSE(parse_endpoint("127.0.0.1:70000"));
  CHECK_FALSE(parse_endpoint("localhost:80"));

  Topology t({"n3", "n1", "n2"});
  CHECK(t.members() == std::vector<NodeId>{"n1", "n2", "n3"});
  CHECK(t.quorum() == 2);
  CHECK(t.index_of("n2") == MemberIndex{1});
  CHECK_FALSE(t.index_of("n4"));
  CHECK(Topology({"n1", "n2", "n3"}).fingerprint() == t.fingerprint());
  CHECK(Topology({"n1", "n2"}).fingerprint() != t.fingerprint());
  CHECK_THROWS(Topology({"n1", "n1"}));
  CHECK_THROWS(Topology({"Bad"}));
  CHECK_THROWS(Topology(std::vector<NodeId>{}));
  CHECK(split_list(" a, b,,c ") == std::vector<std::string>{"a", "b", "c"});
}
