#pragma once
// Framing, encryption and freshness of every datagram and TCP frame.
//
//  offset  size  field (the header is in clear, authenticated as AEAD data)
//  +------+-----+---------------------------------------------------------+
//  |    0 |   4 | magic "RGRD"                                            |
//  |    4 |   1 | version (kFrameVersion)                                 |
//  |    5 |   1 | type (MsgType, owned by the layer that sends it)        |
//  |    6 |   1 | key tag: which accepted secret sealed it (datagrams,    |
//  |      |     | handshakes; 0 on an established connection)             |
//  |    7 |   1 | reserved, zero                                          |
//  |    8 |   8 | cluster id, little endian (hash of the cluster name)    |
//  |   16 |  16 | session: the sending process's random id (datagrams,    |
//  |      |     | handshakes); zero on an established connection          |
//  |   32 |   8 | counter, little endian: never repeats for a session or  |
//  |      |     | a connection's direction; session+counter is the nonce  |
//  |   40 |   4 | body length n, checked against the channel's maximum    |
//  |      |     | before anything is allocated                            |
//  |   44 |   n | body, encrypted: XChaCha20-Poly1305 (IETF)              |
//  | 44+n |  16 | AEAD tag over header and body                           |
//  +------+-----+---------------------------------------------------------+
//
// Datagrams are sealed with the peer key and the process's session; the
// receiver's replay window (one per verified session, see grid/sessions.h)
// rejects a counter seen before. A TCP connection starts with a handshake:
// each side sends a fresh 32-byte nonce in a handshake frame, and both
// derive the connection's two direction keys from the pair. Frames after it
// must carry exactly the next counter, so a recorded frame, or a whole
// recorded connection, replayed later does not open.
//
// A frame that fails any check is dropped and counted by the caller; nothing
// in it is trusted (or even decrypted) before its tag matches.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/keys.h"

namespace rg {

inline constexpr std::uint32_t kFrameMagic = 0x44524752;  // "RGRD" read as LE u32
inline constexpr std::uint8_t kFrameVersion = 2;
inline constexpr std::size_t kHeaderSize = 44;
inline constexpr std::size_t kMacSize = 16;
inline constexpr std::size_t kSessionSize = 16;
inline constexpr std::size_t kMaxDatagramBody = 60000;           // below lo's 64 KiB MTU
inline constexpr std::size_t kMaxStreamBody = 16 * 1024 * 1024;  // TCP frames
inline constexpr std::uint8_t kHandshakeType = 255;
inline constexpr std::size_t kHandshakeNonce = 32;
inline constexpr std::size_t kHandshakeFrame = kHeaderSize + kHandshakeNonce + kMacSize;  // 92 bytes

using SessionId = std::array<unsigned char, kSessionSize>;
inline std::string_view bytes_of(const SessionId& s) {
  return std::string_view(reinterpret_cast<const char*>(s.data()), s.size());
}

enum class FrameError {
  ok,
  truncated,
  bad_magic,
  bad_version,
  wrong_cluster,
  too_large,
  bad_mac,      // no accepted key opens it (forged, wrong secret, tampered)
  out_of_order, // authentic but not the connection's next counter (a replay)
};
const char* to_string(FrameError e);

struct FrameHeader {
  std::uint8_t type = 0;
  std::uint8_t key_tag = 0;
  std::uint64_t cluster = 0;
  SessionId session{};
  std::uint64_t counter = 0;
  std::uint32_t body_len = 0;
};

// Building a frame in place, unsealed: frame_begin() reserves the header,
// the caller writes the body after it, frame_end() writes the type and the
// length and reserves the tag. A sealer (DatagramCrypto, StreamCrypto)
// fills the rest and encrypts just before the frame leaves.
std::size_t frame_begin(std::string& out);
void frame_end(std::string& out, std::size_t start, std::uint8_t type);
// Whole size of the frame whose (unsealed or sealed) header is at `h`.
std::size_t frame_size(const char* h);
// Checks the fixed header (for TCP, before reading the body).
FrameError read_header(std::string_view bytes, std::uint64_t cluster, std::size_t max_body, FrameHeader& out);

// Datagrams and handshakes: sealed with a ring's key under this process's
// random session and a counter that only grows. One per process and use.
class DatagramCrypto {
 public:
  DatagramCrypto(std::uint64_t cluster_id, KeyRing ring);

  std::uint64_t cluster_id() const { return cluster_id_; }
  const SessionId& session() const { return session_; }
  const KeyRing& ring() const { return ring_; }

  // Seals the unsealed frame at `frame` with `key` (the ring's sealing key
  // if null) and the next counter.
  void seal(char* frame, const FrameKey* key = nullptr);
  // Authenticates and decrypts in place; on ok, `body` views the plain body
  // and `used` (if given) the key that opened it.
  FrameError open(char* frame, std::size_t size, std::size_t max_body, FrameHeader& h, std::string_view& body,
                  const FrameKey** used = nullptr) const;

 private:
  std::uint64_t cluster_id_;
  KeyRing ring_;
  SessionId session_{};
  std::uint64_t counter_ = 0;
};

// One TCP connection's handshake and its direction keys and counters.
class StreamCrypto {
 public:
  StreamCrypto(DatagramCrypto& hs, bool initiator);

  // Our handshake frame: the initiator sends it at once, the responder in
  // answer to the initiator's (sealed with the key that opened that one).
  std::string hello();
  // Opens the peer's handshake frame; on ok the connection is established.
  FrameError on_hello(char* frame, std::size_t size);
  bool established() const { return established_; }
  bool initiator() const { return initiator_; }
  std::uint64_t hs_cluster() const { return hs_.cluster_id(); }

  void seal(char* frame);
  FrameError open(char* frame, std::size_t size, std::size_t max_body, FrameHeader& h, std::string_view& body);

 private:
  DatagramCrypto& hs_;
  bool initiator_;
  bool established_ = false;
  const FrameKey* key_ = nullptr;  // the key both sides hold (responder: the one that opened)
  std::array<unsigned char, kHandshakeNonce> mine_{};
  std::array<unsigned char, 32> tx_{}, rx_{};
  std::uint64_t tx_counter_ = 0, rx_counter_ = 0;
};

}  // namespace rg
