#pragma once
// Quorum arithmetic, in one place: a majority of n, whether a vote among n
// voters is won, still open or lost, and how many ready peers a restarted
// acceptor must hear from. Everything that counts votes calls these; the
// unit test checks them against a naive count over every split of n voters.
#include <cstddef>

namespace rg::quorum {

// The smallest set any two of which intersect.
constexpr std::size_t majority(std::size_t n) { return n / 2 + 1; }

enum class Tally { won, pending, lost };

// `yes` voters said yes, `no` voters said no (or cannot say yes any more);
// the remaining n - yes - no have not answered.
constexpr Tally tally(std::size_t n, std::size_t yes, std::size_t no) {
  if (yes >= majority(n)) return Tally::won;
  if (n - no < majority(n)) return Tally::lost;  // even every silent one cannot make it
  return Tally::pending;
}

// A restarted acceptor that lost its state adopts what this many other,
// ready members hold. Any majority minus the restarted node has
// majority(n) - 1 members among the other n - 1, so it always meets one of
// them: (majority(n) - 1) + recovery_threshold(n) = n > n - 1.
constexpr std::size_t recovery_threshold(std::size_t n) { return n - majority(n) + 1; }

}  // namespace rg::quorum
