// libFuzzer target: every decoder of every wire message, the framing
// (datagram open, a connection's handshake and its frames) and the replay
// window, on arbitrary bytes. The first byte picks the decoder; the rest is
// the body. Built and run by tools/fuzz.sh (clang only).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <string>

#include "common/frame.h"
#include "common/keys.h"
#include "grid/sessions.h"
#include "tests/unit/decoder_corpus.h"

using namespace rg;
using namespace rg::grid;

namespace {
template <class M>
void try_decode(std::string_view body) {
  M m;
  (void)decode(body, m);
}

DatagramCrypto& crypto() {
  static DatagramCrypto c(cluster_id_of("fuzz"), derive_ring("fuzz", {std::string(32, 's')}, KeyUse::peer));
  return c;
}

// The framing on the same bytes: as a datagram, as the handshake of a new
// connection, and as a frame of an established one.
void try_frames(std::string_view bytes) {
  FrameHeader h;
  std::string_view inner;
  std::string copy(bytes);
  (void)crypto().open(copy.data(), copy.size(), kMaxDatagramBody, h, inner);
  copy.assign(bytes);
  StreamCrypto responder(crypto(), false);
  (void)responder.on_hello(copy.data(), copy.size());
  StreamCrypto client(crypto(), true), server(crypto(), false);
  auto hello = client.hello();
  if (server.on_hello(hello.data(), hello.size()) != FrameError::ok) __builtin_trap();
  copy.assign(bytes);
  (void)server.open(copy.data(), copy.size(), kMaxStreamBody, h, inner);
  // Counters from the bytes, into a replay window and the session table.
  static grid::PeerSessions sessions;
  grid::ReplayWindow w;
  for (std::size_t i = 0; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t c = 0;
    for (int k = 0; k < 8; ++k) c |= std::uint64_t(static_cast<unsigned char>(bytes[i + k])) << (8 * k);
    (void)w.accept(c);
    SessionId s{};
    s[0] = static_cast<unsigned char>(c);
    (void)sessions.check(s, c >> 8, grid::Sender{"n1", c & 3}, Time{} + milliseconds(c & 0xffff));
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view all(reinterpret_cast<const char*>(data), size);
  std::string_view body = all.substr(1);
  try_frames(body);
  static const unsigned kinds = [] {
    unsigned n = 0;
    for_each_sample([&](const auto&, const char*) { ++n; });
    return n;
  }();
  unsigned pick = data[0] % kinds;
  unsigned i = 0;
  for_each_sample([&](const auto& sample, const char*) {
    using M = std::decay_t<decltype(sample)>;
    if (i++ == pick) try_decode<M>(body);
  });
  return 0;
}
