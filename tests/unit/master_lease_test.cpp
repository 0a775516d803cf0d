#include <doctest/doctest.h>

#include "agent/master_lease.h"

using namespace rg;
using namespace rg::agent;

namespace {
Time at(int ms) { return Time{} + milliseconds(ms); }
}  // namespace

TEST_CASE("master lease: counted from the operation's start, minus the drift") {
  MasterLease l(milliseconds(1000), 0.05, milliseconds(100));
  CHECK_FALSE(l.held(at(0)));
  CHECK_FALSE(l.renewal_due(at(0)));
  l.start(at(10), at(40));  // establish started at 10, committed at 40
  CHECK(l.bound() == at(960));
  CHECK(l.held(at(959)));
  CHECK_FALSE(l.held(at(960)));
  CHECK_FALSE(l.renewal_due(at(139)));
  CHECK(l.renewal_due(at(140)));
}

TEST_CASE("master lease: a renewal moves the bound forward, never back") {
  MasterLease l(milliseconds(1000), 0.05, milliseconds(100));
  l.start(at(0), at(5));
  l.renewal_sent(at(100));
  CHECK_FALSE(l.renewal_due(at(150)));
  l.renewed(at(100), at(700));  // a slow commit: counted from its start
  CHECK(l.bound() == at(1050));
  l.renewed(at(50), at(800));  // an older renewal committing late
  CHECK(l.bound() == at(1050));
}

TEST_CASE("master lease: stop ends it at once and renewals no longer count") {
  MasterLease l(milliseconds(1000), 0.05, milliseconds(100));
  l.start(at(0), at(5));
  l.stop(at(300));
  CHECK(l.bound() == at(300));
  CHECK_FALSE(l.held(at(299)));
  CHECK_FALSE(l.renewal_due(at(400)));
  l.renewed(at(250), at(320));
  CHECK(l.bound() == at(300));
  // A new term starts from its own operation.
  l.start(at(500), at(510));
  CHECK(l.held(at(1449)));
}

TEST_CASE("master lease: the planted bug counts from the commit") {
  MasterLease l(milliseconds(1000), 0.05, milliseconds(100), /*plant_from_commit=*/true);
  l.start(at(10), at(400));
  CHECK(l.bound() == at(1350));
}
