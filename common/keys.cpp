#include "common/keys.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <sodium.h>

namespace rg {
namespace {

void init_sodium() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

}  // namespace

std::string decode_secret(std::string_view text, std::string* why) {
  init_sodium();
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  int rc = sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(),
                             " \t\r\n", &len, &end, sodium_base64_VARIANT_ORIGINAL);
  if (rc != 0 || end != text.data() + text.size()) {
    if (why) *why = "is not base64 text (make one with 'rolegrid keygen')";
    return {};
  }
  out.resize(len);
  if (out.size() < kMinSecretBytes) {
    if (why) *why = fmt::format("holds {} bytes; at least {} random bytes are needed (make one with 'rolegrid keygen')",
                                out.size(), kMinSecretBytes);
    return {};
  }
  return out;
}

std::string read_secret_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::invalid_argument(fmt::format("cannot read secret file '{}'", path));
  // The secret is the cluster's only credential: a copy others can read is a leak.
  if ((st.st_mode & 077) != 0)
    throw std::invalid_argument(fmt::format("secret file '{}' is readable by group or others (mode {:04o}); "
                                            "run: chmod 600 {}",
                                            path, st.st_mode & 07777, path));
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(fmt::format("cannot read secret file '{}'", path));
  std::stringstream ss;
  ss << in.rdbuf();
  std::string why;
  auto secret = decode_secret(ss.str(), &why);
  if (secret.empty()) throw std::invalid_argument(fmt::format("secret file '{}' {}", path, why));
  return secret;
}

std::string new_secret_text() {
  init_sodium();
  unsigned char raw[kMinSecretBytes];
  randombytes_buf(raw, sizeof raw);
  char text[sodium_base64_ENCODED_LEN(kMinSecretBytes, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(text, sizeof text, raw, sizeof raw, sodium_base64_VARIANT_ORIGINAL);
  sodium_memzero(raw, sizeof raw);
  return std::string(text) + "\n";
}

KeyRing derive_ring(std::string_view cluster, const std::vector<std::string>& secrets, KeyUse use) {
  init_sodium();
  KeyRing ring;
  // The cluster name keys the master key's hash, so two clusters that share
  // a secret by accident still have different keys.
  unsigned char name_key[crypto_generichash_KEYBYTES];
  crypto_generichash(name_key, sizeof name_key, bytes(cluster), cluster.size(), nullptr, 0);
  for (const auto& secret : secrets) {
    unsigned char master[crypto_kdf_KEYBYTES];
    crypto_generichash(master, sizeof master, bytes(secret), secret.size(), name_key, sizeof name_key);
    FrameKey k;
    crypto_kdf_derive_from_key(k.key.data(), k.key.size(), static_cast<std::uint64_t>(use), "rolegrid", master);
    sodium_memzero(master, sizeof master);
    unsigned char id[8];
    crypto_generichash(id, sizeof id, k.key.data(), k.key.size(), nullptr, 0);
    k.tag = id[0];
    ring.keys.push_back(k);
  }
  return ring;
}

std::uint64_t cluster_id_of(std::string_view cluster) {
  init_sodium();
  unsigned char id[8];
  crypto_generichash(id, sizeof id, bytes(cluster), cluster.size(), nullptr, 0);
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | id[i];
  return v;
}

}  // namespace rg
