// The switch's relay table (csrc/udp_linux.cc): member id -> endpoint, to forward
// pair data without JS, and endpoint -> id, the only source accepted for that id.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "udp_address.h"

namespace etherlink {

// Pair data as the switch sees it (docs/PROTOCOL.md, lib/protocol/constants.ts):
// version, type, destination member id (u16 big-endian), then receiver index,
// counter, ciphertext and tag, which the switch forwards untouched.
constexpr uint8_t kRelayProtocolVersion = 2;
constexpr uint8_t kPairDataType = 0x27;
constexpr size_t kPairDataDestOffset = 2;
// 4 prefix + 4 receiver index + 8 counter + 16 tag: anything shorter is not pair data.
constexpr size_t kPairDataMinSize = 32;
// Member ids are u16; 0 is never one, so a zeroed destination never routes.
constexpr uint32_t kMaxMemberId = 65535;

// The JS Float64Array of relay counters: this many doubles per member id, each
// datagram count followed by its bytes (RelayCounter in lib/io/native.ts).
constexpr size_t kRelayCountersPerMember = 4;
enum RelayCounterIndex : size_t {
  kRelayToDatagrams = 0,    // relayed to this member
  kRelayToBytes = 1,
  kRelayFromDatagrams = 2,  // relayed from this member
  kRelayFromBytes = 3,
};

// The bytes of a slot that identify a peer: address and port, not the 2 reserved bytes.
constexpr size_t kEndpointKeyBytes = kAddrReservedOffset;

// A fixed-size key, so looking a source up never allocates.
struct EndpointKey {
  uint8_t bytes[kEndpointKeyBytes];

  static EndpointKey FromSlot(const uint8_t* slot) {
    EndpointKey k;
    std::memcpy(k.bytes, slot, kEndpointKeyBytes);
    return k;
  }
  bool Matches(const uint8_t* slot) const { return std::memcmp(bytes, slot, kEndpointKeyBytes) == 0; }
  bool operator==(const EndpointKey& o) const { return std::memcmp(bytes, o.bytes, kEndpointKeyBytes) == 0; }
};

struct EndpointKeyHash {
  size_t operator()(const EndpointKey& k) const noexcept {
    // Two words and the port, mixed by murmur3's 64-bit finalizer: peers that
    // differ only in the port or the last address byte still spread.
    uint64_t a, b;
    uint16_t port;
    std::memcpy(&a, k.bytes, 8);
    std::memcpy(&b, k.bytes + 8, 8);
    std::memcpy(&port, k.bytes + kAddrPortOffset, 2);
    uint64_t h = a ^ (b * 0x9e3779b97f4a7c15ULL) ^ (static_cast<uint64_t>(port) << 32);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return static_cast<size_t>(h);
  }
};

// Invariant: id has a route exactly when owners_ maps that route's endpoint to id,
// so one endpoint is never two members.
class RelayTable {
 public:
  bool empty() const { return owners_.empty(); }

  // Member `id` (1..kMaxMemberId) lives at, and only sends from, `slot`, and
  // is relayed to and from members of the same `group` only (its network). A
  // roaming member leaves its old endpoint; a member whose endpoint `id` takes loses its route.
  void Set(uint16_t id, const uint8_t* slot, uint16_t group = 0) {
    // Sized on first use: only a switch's socket pays for the table.
    if (routes_.empty()) routes_.resize(kMaxMemberId + 1);
    Remove(id);
    EndpointKey key = EndpointKey::FromSlot(slot);
    auto it = owners_.find(key);
    if (it != owners_.end()) {
      routes_[it->second].present = false;
      it->second = id;
    } else {
      owners_.emplace(key, id);
    }
    Route& r = routes_[id];
    std::memcpy(r.slot, slot, kEndpointKeyBytes);
    std::memset(r.slot + kEndpointKeyBytes, 0, kAddrSlot - kEndpointKeyBytes);
    r.group = group;
    r.present = true;
  }

  void Remove(uint16_t id) {
    if (routes_.empty() || !routes_[id].present) return;
    owners_.erase(EndpointKey::FromSlot(routes_[id].slot));
    routes_[id].present = false;
  }

  // Where member `id` lives (an address slot), or null.
  const uint8_t* RouteOf(uint16_t id) const {
    if (routes_.empty() || !routes_[id].present) return nullptr;
    return routes_[id].slot;
  }

  // Whether members `a` and `b` (both routed) may be relayed to each other.
  bool SameGroup(uint16_t a, uint16_t b) const { return routes_[a].group == routes_[b].group; }

  // The member that sends from this endpoint, or 0.
  uint16_t SourceOf(const EndpointKey& key) const {
    auto it = owners_.find(key);
    return it == owners_.end() ? 0 : it->second;
  }

  // On close: forget every route and give the memory back.
  void Release() {
    std::vector<Route>().swap(routes_);
    std::unordered_map<EndpointKey, uint16_t, EndpointKeyHash>().swap(owners_);
  }

 private:
  struct Route {
    uint8_t slot[kAddrSlot];
    uint16_t group = 0;
    bool present = false;
  };
  std::vector<Route> routes_;  // indexed by member id
  std::unordered_map<EndpointKey, uint16_t, EndpointKeyHash> owners_;
};

}  // namespace etherlink
