#include "common/frame.h"

#include <cstring>
#include <stdexcept>

#include <sodium.h>

namespace rg {
namespace {

static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == kSessionSize + 8, "nonce is session + counter");
static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == kMacSize);

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
unsigned char* u8(char* p) { return reinterpret_cast<unsigned char*>(p); }

// Fills the sealer's fields of an unsealed frame's header and encrypts its
// body in place, writing the tag into the space frame_end() reserved.
void seal_frame(char* f, std::uint8_t key_tag, std::uint64_t cluster, const unsigned char* session,
                std::uint64_t counter, const unsigned char* key) {
  f[6] = static_cast<char>(key_tag);
  put_u64(f + 8, cluster);
  if (session) std::memcpy(f + 16, session, kSessionSize);
  else std::memset(f + 16, 0, kSessionSize);
  put_u64(f + 32, counter);
  std::uint32_t n = get_u32(f + 40);
  unsigned char* body = u8(f + kHeaderSize);
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(body, body + n, nullptr, body, n, u8(f), kHeaderSize,
                                                      nullptr, u8(f + 16), key);
}

// Authenticates, then decrypts in place. On a mismatch libsodium zeroes the
// output, here the body itself: only call it with the one key to try.
bool open_frame(char* f, std::uint32_t n, const unsigned char* key) {
  unsigned char* body = u8(f + kHeaderSize);
  return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(body, nullptr, body, n, body + n, u8(f), kHeaderSize,
                                                             u8(f + 16), key) == 0;
}

// Checks the tag only (no output is written), so another key may be tried.
bool verifies(const char* f, std::uint32_t n, const unsigned char* key) {
  auto* body = reinterpret_cast<const unsigned char*>(f + kHeaderSize);
  return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(nullptr, nullptr, body, n, body + n,
                                                             reinterpret_cast<const unsigned char*>(f), kHeaderSize,
                                                             reinterpret_cast<const unsigned char*>(f + 16), key) == 0;
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
    case FrameError::out_of_order: return "replayed or out of order";
  }
  return "?";
}

std::size_t frame_begin(std::string& out) {
  std::size_t start = out.size();
  out.resize(start + kHeaderSize);
  return start;
}

void frame_end(std::string& out, std::size_t start, std::uint8_t type) {
  std::size_t body_len = out.size() - start - kHeaderSize;
  char* h = out.data() + start;
  put_u32(h, kFrameMagic);
  h[4] = static_cast<char>(kFrameVersion);
  h[5] = static_cast<char>(type);
  h[7] = 0;
  put_u32(h + 40, static_cast<std::uint32_t>(body_len));
  out.append(kMacSize, '\0');
}

std::size_t frame_size(const char* h) { return kHeaderSize + get_u32(h + 40) + kMacSize; }

FrameError read_header(std::string_view b, std::uint64_t cluster, std::size_t max_body, FrameHeader& out) {
  if (b.size() < kHeaderSize) return FrameError::truncated;
  if (get_u32(b.data()) != kFrameMagic) return FrameError::bad_magic;
  if (static_cast<std::uint8_t>(b[4]) != kFrameVersion) return FrameError::bad_version;
  out.type = static_cast<std::uint8_t>(b[5]);
  out.key_tag = static_cast<std::uint8_t>(b[6]);
  out.cluster = get_u64(b.data() + 8);
  std::memcpy(out.session.data(), b.data() + 16, kSessionSize);
  out.counter = get_u64(b.data() + 32);
  out.body_len = get_u32(b.data() + 40);
  if (out.cluster != cluster) return FrameError::wrong_cluster;
  if (out.body_len > max_body) return FrameError::too_large;
  return FrameError::ok;
}

DatagramCrypto::DatagramCrypto(std::uint64_t cluster_id, KeyRing ring) : cluster_id_(cluster_id), ring_(std::move(ring)) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  if (ring_.keys.empty()) throw std::invalid_argument("no key to seal frames with");
  randombytes_buf(session_.data(), session_.size());
}

void DatagramCrypto::seal(char* frame, const FrameKey* key) {
  const FrameKey& k = key ? *key : ring_.sealing();
  seal_frame(frame, k.tag, cluster_id_, session_.data(), ++counter_, k.key.data());
}

FrameError DatagramCrypto::open(char* frame, std::size_t size, std::size_t max_body, FrameHeader& h,
                                std::string_view& body, const FrameKey** used) const {
  auto e = read_header(std::string_view(frame, size), cluster_id_, max_body, h);
  if (e != FrameError::ok) return e;
  if (size < kHeaderSize + h.body_len + kMacSize) return FrameError::truncated;
  // Two accepted secrets may share a tag (one byte): then each candidate is
  // checked without writing, and only the one that verifies decrypts.
  std::size_t candidates = 0;
  for (const auto& k : ring_.keys) candidates += k.tag == h.key_tag;
  for (const auto& k : ring_.keys) {
    if (k.tag != h.key_tag) continue;
    if (candidates > 1 && !verifies(frame, h.body_len, k.key.data())) continue;
    if (!open_frame(frame, h.body_len, k.key.data())) return FrameError::bad_mac;
    body = std::string_view(frame + kHeaderSize, h.body_len);
    if (used) *used = &k;
    return FrameError::ok;
  }
  return FrameError::bad_mac;
}

StreamCrypto::StreamCrypto(DatagramCrypto& hs, bool initiator) : hs_(hs), initiator_(initiator) {
  randombytes_buf(mine_.data(), mine_.size());
  if (initiator_) key_ = &hs_.ring().sealing();
}

std::string StreamCrypto::hello() {
  std::string out;
  auto start = frame_begin(out);
  out.append(reinterpret_cast<const char*>(mine_.data()), mine_.size());
  frame_end(out, start, kHandshakeType);
  hs_.seal(out.data(), key_);
  return out;
}

FrameError StreamCrypto::on_hello(char* frame, std::size_t size) {
  if (established_) return FrameError::out_of_order;
  FrameHeader h;
  std::string_view body;
  const FrameKey* used = nullptr;
  auto e = hs_.open(frame, size, kHandshakeNonce, h, body, &used);
  if (e != FrameError::ok) return e;
  // Our own handshake reflected back (a connection to ourselves) is refused too.
  if (h.type != kHandshakeType || body.size() != kHandshakeNonce || (initiator_ && used != key_) ||
      h.session == hs_.session())
    return FrameError::bad_mac;
  if (!initiator_) key_ = used;
  // Both nonces are fresh on their own side: keys made from the pair are
  // new for this connection, whatever an attacker replays into it.
  std::string material = "rolegrid stream v2";
  const char* theirs = body.data();
  const char* ours = reinterpret_cast<const char*>(mine_.data());
  material.append(initiator_ ? ours : theirs, kHandshakeNonce);
  material.append(initiator_ ? theirs : ours, kHandshakeNonce);
  unsigned char okm[64];
  crypto_generichash(okm, sizeof okm, u8(material.data()), material.size(), key_->key.data(), key_->key.size());
  std::memcpy((initiator_ ? tx_ : rx_).data(), okm, 32);
  std::memcpy((initiator_ ? rx_ : tx_).data(), okm + 32, 32);
  sodium_memzero(okm, sizeof okm);
  established_ = true;
  return FrameError::ok;
}

void StreamCrypto::seal(char* frame) {
  // Before the handshake the key is all zeros: sealing then would repeat nonces.
  if (!established_) throw std::logic_error("StreamCrypto::seal before the handshake");
  seal_frame(frame, 0, hs_.cluster_id(), nullptr, ++tx_counter_, tx_.data());
}

FrameError StreamCrypto::open(char* frame, std::size_t size, std::size_t max_body, FrameHeader& h,
                              std::string_view& body) {
  auto e = read_header(std::string_view(frame, size), hs_.cluster_id(), max_body, h);
  if (e != FrameError::ok) return e;
  if (!established_) return FrameError::out_of_order;
  if (size < kHeaderSize + h.body_len + kMacSize) return FrameError::truncated;
  if (!open_frame(frame, h.body_len, rx_.data())) return FrameError::bad_mac;
  if (h.counter != rx_counter_ + 1) return FrameError::out_of_order;
  ++rx_counter_;
  body = std::string_view(frame + kHeaderSize, h.body_len);
  return FrameError::ok;
}

}  // namespace rg
