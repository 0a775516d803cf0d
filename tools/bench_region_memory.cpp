// bench_region_memory: checks Region's memory target (1M entries of 16 B keys
// and 100 B values well under 200 MiB) and put/get speed, side by side with a
// plain std::unordered_map<std::string, std::string> of the same data.
// Run by hand by whoever changes Region's layout; not part of the test suite.
//
// Each measurement runs in its own forked child, so memory freed by the first
// one (which the allocator may keep) cannot flatter the second.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>

#include "grid/region.h"

namespace {

constexpr std::size_t kEntries = 1'000'000;
constexpr std::size_t kValueLen = 100;

struct Result {
  double rss_bytes = 0;
  double put_ns = 0;
  double get_ns = 0;
  std::size_t found = 0;
};

double rss_bytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f || std::fscanf(f, "%ld %ld", &pages, &resident) != 2) std::abort();
  std::fclose(f);
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double now_ns() {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count());
}

// Exactly 16 bytes: "key-" and 12 digits.
void make_key(std::string& key, std::size_t i) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "key-%012zu", i);
  key.assign(buf, 16);
}

// Gets visit keys in a scattered order, as real lookups would.
std::size_t get_index(std::size_t i) { return (i * 7919) % kEntries; }

Result run_region() {
  Result r;
  rg::grid::Region region;
  rg::grid::Write w;
  w.region = "bench";
  w.value.assign(kValueLen, 'v');
  double rss0 = rss_bytes();
  double t0 = now_ns();
  for (std::size_t i = 0; i < kEntries; ++i) {
    make_key(w.key, i);
    w.version = rg::grid::make_version(i + 1, 1);
    region.apply(w);
  }
  double t1 = now_ns();
  r.rss_bytes = rss_bytes() - rss0;
  r.put_ns = (t1 - t0) / kEntries;
  std::string key;
  t0 = now_ns();
  for (std::size_t i = 0; i < kEntries; ++i) {
    make_key(key, get_index(i));
    auto v = region.get(key);
    if (v && v->value.size() == kValueLen) ++r.found;
  }
  r.get_ns = (now_ns() - t0) / kEntries;
  return r;
}

Result run_map() {
  Result r;
  std::unordered_map<std::string, std::string> map;
  std::string key;
  std::string value(kValueLen, 'v');
  double rss0 = rss_bytes();
  double t0 = now_ns();
  for (std::size_t i = 0; i < kEntries; ++i) {
    make_key(key, i);
    map.insert_or_assign(key, value);
  }
  double t1 = now_ns();
  r.rss_bytes = rss_bytes() - rss0;
  r.put_ns = (t1 - t0) / kEntries;
  t0 = now_ns();
  for (std::size_t i = 0; i < kEntries; ++i) {
    make_key(key, get_index(i));
    auto it = map.find(key);
    if (it == map.end()) continue;
    std::string copy = it->second;  // Region::get returns a copy too
    if (copy.size() == kValueLen) ++r.found;
  }
  r.get_ns = (now_ns() - t0) / kEntries;
  return r;
}

// Runs `fn` in a child process and returns its result through a pipe.
Result in_child(Result (*fn)()) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  pid_t pid = fork();
  if (pid < 0) std::abort();
  if (pid == 0) {
    close(fds[0]);
    Result r = fn();
    if (write(fds[1], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) _exit(1);
    _exit(0);
  }
  close(fds[1]);
  Result r;
  if (read(fds[0], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) std::abort();
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return r;
}

void print(const char* name, const Result& r) {
  std::printf("%-28s %9.1f %10.1f %10.1f %10.1f %9zu\n", name, r.rss_bytes / kEntries,
              r.rss_bytes / (1024.0 * 1024.0), r.put_ns, r.get_ns, r.found);
}

}  // namespace

int main() {
  Result region = in_child(run_region);
  Result map = in_child(run_map);
  std::printf("%zu entries, 16 B keys, %zu B values\n", kEntries, kValueLen);
  std::printf("%-28s %9s %10s %10s %10s %9s\n", "", "B/entry", "RSS MiB", "put ns/op",
              "get ns/op", "found");
  print("rg::grid::Region", region);
  print("std::unordered_map<str,str>", map);
  std::printf("%-28s %9.2f %10.2f %10.2f %10.2f\n", "ratio region/map",
              region.rss_bytes / map.rss_bytes, region.rss_bytes / map.rss_bytes,
              region.put_ns / map.put_ns, region.get_ns / map.get_ns);
  bool ok = region.found == kEntries && map.found == kEntries;
  return ok ? 0 : 1;
}
