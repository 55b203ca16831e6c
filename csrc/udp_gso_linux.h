// UDP GSO/GRO (Linux >= 4.18 / 5.0): grouping datagrams into UDP_SEGMENT sends,
// splitting UDP_GRO receives back into datagrams, and probing what the kernel has.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "udp_address.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

namespace etherlink {

// Segments per GSO send (the kernel allows 64 or 128) and bytes per GSO send.
constexpr size_t kMaxGsoSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;
// Datagrams one GRO receive may hold: the JS arrays are sized batchSize x this
// with offload on (UDP_GRO_MAX_SEGMENTS in lib/io/native.ts).
constexpr size_t kMaxGroSegments = 64;
// Control buffer per message: CMSG_SPACE of one int or u16, generously.
constexpr size_t kCtrlSize = 64;

struct UdpOffloads {
  bool gso = false;
  bool gro = false;
  // "gso,gro", "gso", "gro" or "none".
  const char* Name() const;
};

// Both are per-socket options; where the kernel lacks one we simply don't use it.
UdpOffloads ProbeUdpOffloads(int fd);

// How many datagrams from i on can ride in one UDP_SEGMENT message: contiguous
// in buf, to the same address slot, all of lengths[i] bytes but the last (which
// may be shorter). Sets *total to their bytes. At least 1.
inline size_t GsoRunLength(const uint32_t* offsets, const uint32_t* lengths, const uint8_t* addrs, size_t i,
                           size_t count, size_t* total) {
  size_t segs = 1;
  *total = lengths[i];
  while (i + segs < count && segs < kMaxGsoSegments) {
    size_t k = i + segs;
    if (offsets[k] != offsets[k - 1] + lengths[k - 1] || lengths[k] > lengths[i] || lengths[k - 1] != lengths[i] ||
        *total + lengths[k] > kMaxGsoBytes ||
        std::memcmp(addrs + k * kAddrSlot, addrs + i * kAddrSlot, kAddrSlot) != 0)
      break;
    *total += lengths[k];
    segs++;
  }
  return segs;
}

// Ask the kernel to cut message h into `segment`-byte datagrams.
inline void AttachGsoSegment(msghdr* h, uint8_t* ctrl, uint16_t segment) {
  std::memset(ctrl, 0, kCtrlSize);
  h->msg_control = ctrl;
  h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
  cmsghdr* c = CMSG_FIRSTHDR(h);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
}

// Each `segment`-byte piece of a (GSO) message's single iovec, in order.
template <typename Fn>
inline void ForEachSegment(const msghdr& h, size_t segment, Fn fn) {
  const uint8_t* base = static_cast<const uint8_t*>(h.msg_iov->iov_base);
  size_t len = h.msg_iov->iov_len;
  for (size_t at = 0; at < len; at += segment) fn(base + at, std::min(segment, len - at));
}

// The size of the datagrams a GRO receive of `len` bytes holds (len if one).
inline uint32_t GroSegmentSize(msghdr* h, uint32_t len) {
  uint32_t seg = len;
  for (cmsghdr* c = CMSG_FIRSTHDR(h); c != nullptr; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int v;
      std::memcpy(&v, CMSG_DATA(c), sizeof v);
      if (v > 0 && static_cast<uint32_t>(v) < len) seg = static_cast<uint32_t>(v);
    }
  }
  return seg;
}

// Split a received message of `len` bytes at `base` into datagrams of `seg`
// bytes (the last shorter), at least one (an empty datagram is still a
// datagram), at most `room`: emit(offset, length) for each. Returns how many.
template <typename Emit>
inline uint32_t SplitGro(uint32_t base, uint32_t len, uint32_t seg, uint32_t room, Emit emit) {
  uint32_t n = 0;
  uint32_t at = 0;
  do {
    emit(base + at, std::min(seg, len - at));
    n++;
    at += seg;
  } while (at < len && n < room);
  return n;
}

}  // namespace etherlink
