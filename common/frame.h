#pragma once
// Framing and authentication of every datagram and TCP frame.
//
//  offset  size  field
//  +------+-----+---------------------------------------------------------+
//  |    0 |   4 | magic "RGRD"                                            |
//  |    4 |   1 | version (kFrameVersion)                                 |
//  |    5 |   1 | type (MsgType, owned by the layer that sends it)        |
//  |    6 |   2 | reserved, zero                                          |
//  |    8 |   8 | cluster id, little endian (keyed hash of cluster name)  |
//  |   16 |   4 | body length n, little endian, checked against the       |
//  |      |     | channel's maximum before anything is allocated          |
//  |   20 |   n | body: one Boost.Serialization binary archive (a batch)  |
//  | 20+n |  16 | authenticator: keyed BLAKE2b-128 over bytes [0, 20+n)   |
//  +------+-----+---------------------------------------------------------+
//
// A frame that fails any check is dropped and counted by the caller; nothing
// in it is trusted before the authenticator matches.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace rg {

inline constexpr std::uint32_t kFrameMagic = 0x44524752;  // "RGRD" read as LE u32
inline constexpr std::uint8_t kFrameVersion = 1;
inline constexpr std::size_t kHeaderSize = 20;
inline constexpr std::size_t kMacSize = 16;
inline constexpr std::size_t kMaxDatagramBody = 60000;         // below lo's 64 KiB MTU
inline constexpr std::size_t kMaxStreamBody = 16 * 1024 * 1024;  // TCP frames

enum class FrameError {
  ok,
  truncated,
  bad_magic,
  bad_version,
  wrong_cluster,
  too_large,
  bad_mac,
};
const char* to_string(FrameError e);

struct FrameHeader {
  std::uint8_t type = 0;
  std::uint64_t cluster = 0;
  std::uint32_t body_len = 0;
};

// Holds the cluster key (derived from the secret) and the cluster id.
// Immutable after construction; safe to share on one thread.
class FrameAuth {
 public:
  FrameAuth(std::string_view cluster_name, std::string_view secret);

  std::uint64_t cluster_id() const { return cluster_id_; }

  // Appends header, body and authenticator of one frame to `out`.
  void append(std::string& out, std::uint8_t type, std::string_view body) const;
  // For callers that serialize the body in place: reserve the header with
  // begin(), write the body after it, then seal() fills header and appends the MAC.
  std::size_t begin(std::string& out) const;
  void seal(std::string& out, std::size_t frame_start, std::uint8_t type) const;

  // Checks only the fixed header (for TCP, before reading the body).
  FrameError check_header(std::string_view header, std::size_t max_body, FrameHeader& out) const;
  // Checks a whole frame; on ok, `body` views the body inside `frame`.
  FrameError open(std::string_view frame, std::size_t max_body, FrameHeader& hdr,
                  std::string_view& body) const;

 private:
  void mac(std::string_view data, unsigned char* out) const;
  std::array<unsigned char, 32> key_{};
  std::uint64_t cluster_id_ = 0;
};

}  // namespace rg
