// libFuzzer target: every decoder of every wire message, and the frame
// checks, on arbitrary bytes. The first byte picks the decoder; the rest is
// the body. Built and run by tools/fuzz.sh (clang only).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/frame.h"
#include "tests/unit/decoder_corpus.h"

using namespace rg;
using namespace rg::grid;

namespace {
template <class M>
void try_decode(std::string_view body) {
  M m;
  (void)decode(body, m);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view all(reinterpret_cast<const char*>(data), size);
  std::string_view body = all.substr(1);
  static const FrameAuth auth("fuzz", "secret");
  FrameHeader h;
  std::string_view inner;
  (void)auth.open(body, kMaxStreamBody, h, inner);
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
