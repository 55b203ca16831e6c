// Underlay addresses: the bind address a UDP socket is given as text, and the
// 20-byte address slot JS and native exchange per datagram (lib/io/address.ts).
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace etherlink {

// One slot: 16 bytes IPv6 (IPv4 as ::ffff:a.b.c.d), 2 bytes port (network order), 2 reserved (0).
constexpr size_t kAddrSlot = 20;
constexpr size_t kAddrPortOffset = 16;
constexpr size_t kAddrReservedOffset = 18;
constexpr size_t kV4MappedPrefixSize = 12;
constexpr uint8_t kV4MappedPrefix[kV4MappedPrefixSize] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct BindAddress {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
  bool any6 = false;  // '::' gets dual stack
  uint32_t scope_id = 0;
};

// IPv4 and IPv6 literals, optionally bracketed, IPv6 optionally with %zone
// (an interface name or number). False if `text` is none of these.
bool ParseBindAddress(std::string text, uint16_t port, BindAddress* out);

// Advice for errnos of socket(), bind() and friends.
std::string SocketAdvice(int err);

// A kernel source address into one slot. Per datagram: inline.
inline void WriteAddrSlot(uint8_t* out, const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    std::memcpy(out, &s6->sin6_addr, 16);
    std::memcpy(out + kAddrPortOffset, &s6->sin6_port, 2);
  } else if (ss.ss_family == AF_INET) {
    const auto* s4 = reinterpret_cast<const sockaddr_in*>(&ss);
    std::memcpy(out, kV4MappedPrefix, kV4MappedPrefixSize);
    std::memcpy(out + kV4MappedPrefixSize, &s4->sin_addr, 4);
    std::memcpy(out + kAddrPortOffset, &s4->sin_port, 2);
  } else {
    std::memset(out, 0, kAddrReservedOffset);
  }
  out[kAddrReservedOffset] = 0;
  out[kAddrReservedOffset + 1] = 0;
}

// One slot into a destination for a socket of `family`; link-local IPv6 gets
// `scope_id` (the slot has no room for a zone). Returns the sockaddr length,
// or 0 when the socket cannot reach it (an IPv6 peer for an IPv4 socket).
inline socklen_t SlotToSockaddr(const uint8_t* slot, int family, uint32_t scope_id, sockaddr_storage* ss) {
  uint16_t port_be;
  std::memcpy(&port_be, slot + kAddrPortOffset, 2);
  if (family == AF_INET6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = port_be;
    s6->sin6_flowinfo = 0;
    std::memcpy(&s6->sin6_addr, slot, 16);
    s6->sin6_scope_id = IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr) ? scope_id : 0;
    return sizeof(sockaddr_in6);
  }
  if (std::memcmp(slot, kV4MappedPrefix, kV4MappedPrefixSize) != 0) return 0;
  auto* s4 = reinterpret_cast<sockaddr_in*>(ss);
  s4->sin_family = AF_INET;
  s4->sin_port = port_be;
  std::memcpy(&s4->sin_addr, slot + kV4MappedPrefixSize, 4);
  std::memset(s4->sin_zero, 0, sizeof(s4->sin_zero));
  return sizeof(sockaddr_in);
}

}  // namespace etherlink
