#!/usr/bin/env bash
# Fuzzes every wire decoder with libFuzzer (needs clang and libclang-rt-dev).
#   tools/fuzz.sh [SECONDS]     default 60; seeds from valid encodings
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is not installed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
out="$here/build-fuzz"
mkdir -p "$out/corpus"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -I"$here" $(pkg-config --cflags libsodium fmt))
clang++ "${flags[@]}" -DSPDLOG_FMT_EXTERNAL "$here/tests/fuzz/decode_fuzz.cpp" "$here/common/frame.cpp" \
  "$here/common/keys.cpp" "$here/grid/sessions.cpp" \
  -o "$out/decode_fuzz" $(pkg-config --libs libsodium fmt) -lboost_serialization
# Seed corpus: one valid body per message type, prefixed with its selector.
cat > "$out/seed.cpp" <<'CPP'
#include <fstream>
#include "tests/unit/decoder_corpus.h"
int main(int, char** argv) {
  unsigned i = 0;
  rg::grid::for_each_sample([&](const auto& s, const char*) {
    std::ofstream f(std::string(argv[1]) + "/seed" + std::to_string(i));
    f.put(static_cast<char>(i++));
    f << rg::encode(s);
  });
}
CPP
clang++ -std=c++20 -O1 -I"$here" "$out/seed.cpp" -o "$out/seed" -lboost_serialization
"$out/seed" "$out/corpus"
"$out/decode_fuzz" -max_total_time="$secs" -max_len=4096 -rss_limit_mb=1024 "$out/corpus" 2>&1 | tail -n 5
