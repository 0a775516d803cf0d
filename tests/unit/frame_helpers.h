#pragma once
// Keys and unsealed frames for the tests of the framing and of connections.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/frame.h"
#include "common/keys.h"

namespace rg::test {

inline std::string secret(char fill) { return std::string(32, fill); }

inline DatagramCrypto crypto(const std::string& cluster, std::vector<std::string> secrets,
                             KeyUse use = KeyUse::peer) {
  return DatagramCrypto(cluster_id_of(cluster), derive_ring(cluster, secrets, use));
}

// The frame of `body`, not sealed yet (as a connection queues it).
inline std::string unsealed(std::uint8_t type, std::string_view body) {
  std::string out;
  auto start = frame_begin(out);
  out.append(body);
  frame_end(out, start, type);
  return out;
}

}  // namespace rg::test
