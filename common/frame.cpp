#include "common/frame.h"

#include <cstring>
#include <stdexcept>

#include <sodium.h>

namespace rg {
namespace {

void put_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void put_u64(char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
std::uint64_t get_u64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

const char* to_string(FrameError e) {
  switch (e) {
    case FrameError::ok: return "ok";
    case FrameError::truncated: return "truncated";
    case FrameError::bad_magic: return "bad magic";
    case FrameError::bad_version: return "bad version";
    case FrameError::wrong_cluster: return "wrong cluster";
    case FrameError::too_large: return "too large";
    case FrameError::bad_mac: return "bad authenticator";
  }
  return "?";
}

FrameAuth::FrameAuth(std::string_view cluster_name, std::string_view secret) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  // The key binds the secret to the cluster name, so two clusters sharing a
  // secret by accident still cannot accept each other's frames.
  std::string material = std::string(cluster_name) + '\0' + std::string(secret);
  crypto_generichash(key_.data(), key_.size(),
                     reinterpret_cast<const unsigned char*>(material.data()), material.size(),
                     nullptr, 0);
  sodium_memzero(material.data(), material.size());
  unsigned char id[8];
  crypto_generichash(id, sizeof id, reinterpret_cast<const unsigned char*>(cluster_name.data()),
                     cluster_name.size(), nullptr, 0);
  cluster_id_ = get_u64(reinterpret_cast<const char*>(id));
}

void FrameAuth::mac(std::string_view data, unsigned char* out) const {
  crypto_generichash(out, kMacSize, reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                     key_.data(), key_.size());
}

std::size_t FrameAuth::begin(std::string& out) const {
  std::size_t start = out.size();
  out.resize(start + kHeaderSize);
  return start;
}

void FrameAuth::seal(std::string& out, std::size_t start, std::uint8_t type) const {
  std::size_t body_len = out.size() - start - kHeaderSize;
  char* h = out.data() + start;
  put_u32(h, kFrameMagic);
  h[4] = static_cast<char>(kFrameVersion);
  h[5] = static_cast<char>(type);
  h[6] = h[7] = 0;
  put_u64(h + 8, cluster_id_);
  put_u32(h + 16, static_cast<std::uint32_t>(body_len));
  unsigned char tag[kMacSize];
  mac(std::string_view(out.data() + start, kHeaderSize + body_len), tag);
  out.append(reinterpret_cast<const char*>(tag), kMacSize);
}

void FrameAuth::append(std::string& out, std::uint8_t type, std::string_view body) const {
  auto start = begin(out);
  out.append(body);
  seal(out, start, type);
}

FrameError FrameAuth::check_header(std::string_view h, std::size_t max_body, FrameHeader& out) const {
  if (h.size() < kHeaderSize) return FrameError::truncated;
  if (get_u32(h.data()) != kFrameMagic) return FrameError::bad_magic;
  if (static_cast<std::uint8_t>(h[4]) != kFrameVersion) return FrameError::bad_version;
  out.type = static_cast<std::uint8_t>(h[5]);
  out.cluster = get_u64(h.data() + 8);
  out.body_len = get_u32(h.data() + 16);
  if (out.cluster != cluster_id_) return FrameError::wrong_cluster;
  if (out.body_len > max_body) return FrameError::too_large;
  return FrameError::ok;
}

FrameError FrameAuth::open(std::string_view frame, std::size_t max_body, FrameHeader& hdr,
                           std::string_view& body) const {
  auto e = check_header(frame, max_body, hdr);
  if (e != FrameError::ok) return e;
  std::size_t total = kHeaderSize + hdr.body_len + kMacSize;
  if (frame.size() < total) return FrameError::truncated;
  unsigned char tag[kMacSize];
  mac(frame.substr(0, kHeaderSize + hdr.body_len), tag);
  if (sodium_memcmp(tag, frame.data() + kHeaderSize + hdr.body_len, kMacSize) != 0)
    return FrameError::bad_mac;
  body = frame.substr(kHeaderSize, hdr.body_len);
  return FrameError::ok;
}

}  // namespace rg
