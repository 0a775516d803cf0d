#pragma once
// A frame body: who sent it, then the message, in one archive.
#include "grid/messages.h"

namespace rg::grid {

template <class M>
struct Envelope {
  Sender from;
  M msg;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, from);
    rg::io(ar, msg);
  }
};

// Encodes a Data batch straight from the sender's held writes (no copies);
// byte for byte what decoding into Envelope<Data> expects.
struct DataOut {
  const Sender* from = nullptr;
  std::uint64_t first = 0;
  const Write* const* writes = nullptr;
  std::uint32_t count = 0;
  template <class Ar>
  void io(Ar& ar) {
    rg::io(ar, const_cast<Sender&>(*from));
    rg::io(ar, first);
    ar << count;
    for (std::uint32_t i = 0; i < count; ++i) rg::io(ar, const_cast<Write&>(*writes[i]));
  }
};

}  // namespace rg::grid
