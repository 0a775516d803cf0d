#pragma once
// The cluster secret and the keys derived from it.
//
// A secret file holds base64 text of at least 32 random bytes and is
// readable by its owner only. From each secret (and the cluster name) one
// master key is derived, and from it, with crypto_kdf, one subkey per use:
// peer traffic and admin traffic never share a key, so an admin client's
// secret cannot speak to the peer port (and vice versa, should they ever be
// split). A ring holds the keys of every accepted secret for one use: the
// first seals, any opens. Two secrets are accepted during a rotation.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rg {

inline constexpr std::size_t kMinSecretBytes = 32;

// Decodes a secret's text (base64, surrounding whitespace ignored). Returns
// the bytes, or "" and the reason in `why`.
std::string decode_secret(std::string_view text, std::string* why);
// Reads and checks a secret file; throws std::invalid_argument with a
// one-line reason (missing, readable by group or others, not base64, short).
std::string read_secret_file(const std::string& path);
// Base64 text of 32 fresh random bytes and a newline: a good secret file.
std::string new_secret_text();

enum class KeyUse : std::uint64_t { peer = 1, admin = 2 };

struct FrameKey {
  std::array<unsigned char, 32> key{};
  std::uint8_t tag = 0;  // names the key in frame headers (not secret)
};

struct KeyRing {
  std::vector<FrameKey> keys;  // keys[0] seals; every key opens
  const FrameKey& sealing() const { return keys.front(); }
};

// `secrets` as read by read_secret_file, the sealing one first.
KeyRing derive_ring(std::string_view cluster, const std::vector<std::string>& secrets, KeyUse use);
// The 64-bit cluster id carried in every header (a hash of the name).
std::uint64_t cluster_id_of(std::string_view cluster);

}  // namespace rg
