#include <doctest/doctest.h>

#include <map>
#include <random>

#include "common/codec.h"
#include "common/frame.h"
#include "common/ids.h"
#include "common/keys.h"
#include "frame_helpers.h"

using namespace rg;
using namespace rg::test;

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

// The frame of `body` as `sender` seals it.
std::string sealed(DatagramCrypto& sender, std::uint8_t type, std::string_view body) {
  auto f = unsealed(type, body);
  sender.seal(f.data());
  return f;
}

FrameError open_copy(const DatagramCrypto& c, std::string f, std::size_t max, FrameHeader& h, std::string& body) {
  std::string_view b;
  auto e = c.open(f.data(), f.size(), max, h, b);
  if (e == FrameError::ok) body = std::string(b);
  return e;
}
}  // namespace

TEST_CASE("datagram round trip, encryption and every rejection") {
  auto a = crypto("c1", {secret('a')});
  auto frame = sealed(a, 7, "hello, world");
  CHECK(frame.find("hello") == std::string::npos);  // the body travels encrypted
  FrameHeader h;
  std::string body;
  REQUIRE(open_copy(a, frame, 100, h, body) == FrameError::ok);
  CHECK(h.type == 7);
  CHECK(body == "hello, world");
  CHECK(h.session == a.session());
  CHECK(h.counter == 1);
  CHECK(sealed(a, 7, "x").size() == kHeaderSize + 1 + kMacSize);

  CHECK(open_copy(a, frame, 4, h, body) == FrameError::too_large);
  CHECK(open_copy(a, frame.substr(0, frame.size() - 1), 100, h, body) == FrameError::truncated);
  CHECK(open_copy(a, frame.substr(0, 10), 100, h, body) == FrameError::truncated);
  for (std::size_t i : {std::size_t{6}, std::size_t{20}, std::size_t{33}, kHeaderSize, frame.size() - 1}) {
    std::string forged = frame;  // any byte of key tag, session, counter, body or tag
    forged[i] ^= 1;
    CHECK(open_copy(a, forged, 100, h, body) == FrameError::bad_mac);
  }
  std::string bad_magic = frame;
  bad_magic[0] = 'X';
  CHECK(open_copy(a, bad_magic, 100, h, body) == FrameError::bad_magic);
  std::string bad_version = frame;
  bad_version[4] = 1;
  CHECK(open_copy(a, bad_version, 100, h, body) == FrameError::bad_version);

  CHECK(open_copy(crypto("c1", {secret('b')}), frame, 100, h, body) == FrameError::bad_mac);
  CHECK(open_copy(crypto("c2", {secret('a')}), frame, 100, h, body) == FrameError::wrong_cluster);
  // The admin key is not the peer key, even from the same secret.
  CHECK(open_copy(crypto("c1", {secret('a')}, KeyUse::admin), frame, 100, h, body) == FrameError::bad_mac);
}

TEST_CASE("a rotation: the second secret opens, the first seals") {
  auto old_only = crypto("c", {secret('o')});
  auto both_new_first = crypto("c", {secret('n'), secret('o')});
  auto new_only = crypto("c", {secret('n')});
  FrameHeader h;
  std::string body;
  CHECK(open_copy(both_new_first, sealed(old_only, 1, "x"), 100, h, body) == FrameError::ok);
  CHECK(open_copy(new_only, sealed(both_new_first, 1, "y"), 100, h, body) == FrameError::ok);
  CHECK(open_copy(old_only, sealed(both_new_first, 1, "z"), 100, h, body) == FrameError::bad_mac);
}

TEST_CASE("a rotation whose two secrets share a key tag (one byte): both still open, datagrams and handshakes") {
  // Find two secrets whose peer keys have the same tag (1 in 256 pairs).
  std::map<std::uint8_t, std::string> by_tag;
  std::string s1, s2;
  for (int i = 0; s1.empty(); ++i) {
    auto sec = std::string(28, 'r') + std::to_string(1000 + i);
    auto tag = derive_ring("c", {sec}, KeyUse::peer).sealing().tag;
    auto [it, fresh] = by_tag.emplace(tag, sec);
    if (!fresh) {
      s1 = it->second;
      s2 = sec;
    }
  }
  auto old_first = crypto("c", {s1, s2});
  auto new_first = crypto("c", {s2, s1});
  FrameHeader h;
  std::string body;
  CHECK(open_copy(old_first, sealed(new_first, 1, "sealed with s2"), 100, h, body) == FrameError::ok);
  CHECK(body == "sealed with s2");
  CHECK(open_copy(new_first, sealed(old_first, 1, "sealed with s1"), 100, h, body) == FrameError::ok);
  CHECK(body == "sealed with s1");
  StreamCrypto client(new_first, true), server(old_first, false);
  auto hello = client.hello();
  REQUIRE(server.on_hello(hello.data(), hello.size()) == FrameError::ok);
  auto answer = server.hello();
  REQUIRE(client.on_hello(answer.data(), answer.size()) == FrameError::ok);
  auto f = unsealed(100, "after the handshake");
  client.seal(f.data());
  std::string_view b;
  REQUIRE(server.open(f.data(), f.size(), 1000, h, b) == FrameError::ok);
  CHECK(b == "after the handshake");
}

TEST_CASE("a connection's handshake, and replays into it") {
  auto client_side = crypto("c", {secret('s')}, KeyUse::admin);
  auto server_side = crypto("c", {secret('s')}, KeyUse::admin);
  auto connect = [&](StreamCrypto& client, StreamCrypto& server) {
    auto hello = client.hello();
    auto recorded = hello;  // opening decrypts in place
    REQUIRE(server.on_hello(hello.data(), hello.size()) == FrameError::ok);
    auto answer = server.hello();
    REQUIRE(client.on_hello(answer.data(), answer.size()) == FrameError::ok);
    return recorded;
  };
  StreamCrypto client(client_side, true), server(server_side, false);
  auto client_hello = connect(client, server);
  auto f1 = unsealed(100, "put r k OLD");
  client.seal(f1.data());
  auto recorded = f1;
  FrameHeader h;
  std::string_view body;
  REQUIRE(server.open(f1.data(), f1.size(), 1000, h, body) == FrameError::ok);
  CHECK(body == "put r k OLD");
  // The same frame again on the same connection: refused.
  auto again = recorded;
  CHECK(server.open(again.data(), again.size(), 1000, h, body) == FrameError::out_of_order);
  // A whole recorded connection replayed: the server's fresh nonce makes new keys.
  StreamCrypto server2(server_side, false);
  REQUIRE(server2.on_hello(client_hello.data(), client_hello.size()) == FrameError::ok);
  auto replay = recorded;
  CHECK(server2.open(replay.data(), replay.size(), 1000, h, body) == FrameError::bad_mac);
  // Nothing but a handshake opens before it.
  StreamCrypto fresh(server_side, false);
  auto early = recorded;
  CHECK(fresh.open(early.data(), early.size(), 1000, h, body) == FrameError::out_of_order);
  // A peer with another secret cannot complete one.
  auto stranger = crypto("c", {secret('x')}, KeyUse::admin);
  StreamCrypto intruder(stranger, true), server3(server_side, false);
  auto bad = intruder.hello();
  CHECK(server3.on_hello(bad.data(), bad.size()) == FrameError::bad_mac);
}

TEST_CASE("secrets: base64 of 32 bytes or more") {
  std::string why;
  CHECK(decode_secret(new_secret_text(), &why).size() == 32);
  CHECK(new_secret_text() != new_secret_text());
  CHECK(decode_secret("c2VjcmV0", &why).empty());  // "secret": 6 bytes
  CHECK(why.find("at least 32") != std::string::npos);
  CHECK(decode_secret("not base64 at all!", &why).empty());
  CHECK(why.find("base64") != std::string::npos);
  CHECK(derive_ring("c", {secret('a')}, KeyUse::peer).sealing().key !=
        derive_ring("c", {secret('a')}, KeyUse::admin).sealing().key);
  CHECK(derive_ring("c", {secret('a')}, KeyUse::peer).sealing().key !=
        derive_ring("d", {secret('a')}, KeyUse::peer).sealing().key);
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
