// DataDir: the on-disk half of a node's durable state (layout in data_dir.h).
#include "grid/data_dir.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/codec.h"

namespace rg::grid {

namespace {

constexpr char kMagic[4] = {'R', 'G', 'A', 'S'};
constexpr std::size_t kHeader = 20;
constexpr std::size_t kChecksum = 16;

struct Payload {
  NodeId node;
  std::string cluster;
  DurableState state;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, node);
    rg::io(ar, cluster);
    rg::io(ar, state);
  }
};

// Reads errno first: formatting `what` must not be able to change it.
std::string errno_text(const std::string& what) {
  int err = errno;
  return fmt::format("{}: {}", what, std::strerror(err));
}

template <class T>
void put_le(std::string& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

template <class T>
T get_le(const std::string& in, std::size_t at) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<T>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

std::string checksum(std::string_view bytes) {
  std::string sum(kChecksum, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(sum.data()), sum.size(),
                     reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr, 0);
  return sum;
}

bool write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

DataDir::DataDir(std::string path, NodeId node, std::string cluster, const Topology& topology)
    : path_(std::move(path)), node_(std::move(node)), cluster_(std::move(cluster)),
      members_(fmt::format("{}", fmt::join(topology.members(), ","))) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialize");
  if (::mkdir(path_.c_str(), 0700) != 0 && errno != EEXIST)
    throw std::runtime_error(fmt::format("--data-dir {}: {}", path_, errno_text("cannot create it")));
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw std::invalid_argument(fmt::format("--data-dir {}: not a directory", path_));
  std::string lock = path_ + "/lock";
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) throw std::runtime_error(fmt::format("--data-dir {}: {}", path_, errno_text("cannot open its lock file")));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
    throw std::runtime_error(fmt::format("--data-dir {} is in use by another rolegrid process", path_));
  fd_ = ::open(file().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw std::runtime_error(fmt::format("--data-dir {}: {}", path_, errno_text("cannot open acceptor.state")));
  // The file's name must be durable too, or a crash could lose the file
  // with every save in it.
  int dir = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0 || ::fsync(dir) != 0) {
    std::string why = errno_text("cannot sync the directory");
    if (dir >= 0) ::close(dir);
    throw std::runtime_error(fmt::format("--data-dir {}: {}", path_, why));
  }
  ::close(dir);
}

DataDir::~DataDir() {
  if (fd_ >= 0) ::close(fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

std::string DataDir::file() const { return path_ + "/acceptor.state"; }

DataDir::Loaded DataDir::load() {
  Loaded out;
  std::string bytes;
  char buf[65536];
  for (off_t at = 0;;) {
    ssize_t n = ::pread(fd_, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(fmt::format("--data-dir {}: {}", path_, errno_text("cannot read acceptor.state")));
    if (n == 0) break;
    bytes.append(buf, static_cast<std::size_t>(n));
    at += n;
    if (bytes.size() > kHeader + kMaxPayload + kChecksum) break;
  }
  if (bytes.empty()) return out;  // a new dir, or one whose state was deleted
  auto corrupt = [&](std::string why) {
    out.found = Found::corrupt;
    out.problem = fmt::format("{} is damaged ({}, {} bytes)", file(), why, bytes.size());
    return out;
  };
  if (bytes.size() < kHeader + kChecksum || std::memcmp(bytes.data(), kMagic, 4) != 0)
    return corrupt("no valid header");
  auto version = get_le<std::uint32_t>(bytes, 4);
  auto length = get_le<std::uint32_t>(bytes, 16);
  if (length > kMaxPayload || bytes.size() < kHeader + length + kChecksum) return corrupt("truncated");
  if (checksum(std::string_view(bytes).substr(0, kHeader + length)) != bytes.substr(kHeader + length, kChecksum))
    return corrupt("checksum mismatch");
  if (version != kFormatVersion)
    throw std::invalid_argument(fmt::format("--data-dir {}: acceptor.state has format version {}; this rolegrid "
                                         "reads version {}", path_, version, kFormatVersion));
  Payload p;
  if (!decode(std::string_view(bytes).substr(kHeader, length), p)) return corrupt("undecodable payload");
  if (p.node != node_ || p.cluster != cluster_)
    throw std::invalid_argument(fmt::format("--data-dir {} belongs to node '{}' of cluster '{}', not to '{}' of '{}'",
                                         path_, p.node, p.cluster, node_, cluster_));
  check_members(p.state);
  sequence_ = get_le<std::uint64_t>(bytes, 8);
  out.found = Found::intact;
  out.state = std::move(p.state);
  return out;
}

// Takes the member list out of `state`, refusing a start under another one.
void DataDir::check_members(DurableState& state) const {
  auto it = state.notes.find(kMembersNote);
  if (it == state.notes.end()) return;  // saved before the list was kept
  // Past version 1 the dir holds its own configuration (a member change
  // made it), which the node uses whatever --members says.
  if (state.notes.contains(kConfigNote)) return void(state.notes.erase(it));
  if (it->second != members_)
    throw std::invalid_argument(fmt::format(
        "--members {} differs from the list in --data-dir {} ({}): a running cluster's members do not change by "
        "restarting nodes with a new list (see README, \"Changing the members\")",
        members_, path_, it->second));
  state.notes.erase(it);
}

bool DataDir::save(const DurableState& state, std::string& why) {
  if (fault_) {
    why = fault_();
    if (!why.empty()) return false;
  }
  Payload p{node_, cluster_, state};
  p.state.notes[kMembersNote] = members_;
  std::string payload = encode(p);
  if (payload.size() > kMaxPayload) {
    why = fmt::format("state of {} bytes is over the {} byte cap", payload.size(), kMaxPayload);
    return false;
  }
  std::string record(kMagic, 4);
  put_le<std::uint32_t>(record, kFormatVersion);
  put_le<std::uint64_t>(record, sequence_ + 1);
  put_le<std::uint32_t>(record, static_cast<std::uint32_t>(payload.size()));
  record += payload;
  record += checksum(record);
  // In place: a crash in the middle leaves a file that fails its checksum,
  // which is lost state, recovered from the peers.
  if (!write_all(fd_, record)) {
    why = errno_text("cannot write " + file());
    return false;
  }
  if (::ftruncate(fd_, static_cast<off_t>(record.size())) != 0) {
    why = errno_text("cannot truncate " + file());
    return false;
  }
  if (::fdatasync(fd_) != 0) {
    why = errno_text("fdatasync of " + file() + " failed");
    return false;
  }
  ++sequence_;
  return true;
}

}  // namespace rg::grid
