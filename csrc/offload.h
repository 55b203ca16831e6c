// TCP segmentation and coalescing for TAP devices opened with IFF_VNET_HDR:
// split the kernel's TSO super-frames into wire-sized frames (like
// wireguard-go's gsoSplit) and merge consecutive segments back (GRO) before a write.
#pragma once
#include <cstddef>
#include <cstdint>
#include <sys/uio.h>

namespace etherlink {

// struct virtio_net_hdr, as the TAP reads and writes it (little-endian fields on x86).
struct VnetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(VnetHdr) == 10, "virtio_net_hdr is 10 bytes");

constexpr uint8_t kVnetNeedsCsum = 1;
constexpr uint8_t kGsoNone = 0;
constexpr uint8_t kGsoTcpV4 = 1;
constexpr uint8_t kGsoTcpV6 = 4;
constexpr uint8_t kGsoEcn = 0x80;

// Largest frame a TAP hands over or takes with offloads on (64 KiB IP + Ethernet and a tag).
constexpr size_t kMaxSuperFrame = 65535 + 14 + 4;

// Finish a checksum the kernel left partial: sum from `start` to the end, seeded
// by what is at start+offset, stored there. False if out of bounds.
bool CompleteChecksum(uint8_t* frame, size_t len, size_t start, size_t offset);

// Split a TSO super-frame (frame + its vnet header) into complete frames with
// valid IP and TCP checksums, appended to out[outUsed..outCap). Writes each
// frame's offset/length into offs/lens from index *n (at most maxFrames).
// Returns false (and writes nothing) if it doesn't fit or the frame is not a
// TCP super-frame we understand.
bool GsoSplit(const uint8_t* frame, size_t len, const VnetHdr& h, uint8_t* out, size_t outCap, size_t* outUsed,
              uint32_t* offs, uint32_t* lens, uint32_t maxFrames, uint32_t* n);

// Coalescing state for one write batch: frames are offered in order; a run of
// consecutive TCP segments of one flow becomes one super-frame written with a
// vnet header. The iovecs point into the caller's frames; only headers are copied.
class Coalescer {
 public:
  // Start a run with this frame if it is a coalescible TCP segment; else false.
  bool Begin(const uint8_t* frame, size_t len);
  // Append the next segment if it continues the run; else false (run unchanged).
  bool Append(const uint8_t* frame, size_t len);
  bool active() const { return active_; }
  uint32_t segments() const { return segments_; }
  // Finish: fills hdr, the patched header copy and iov (hdr, headers, payloads...).
  // Returns the iovec count. The run is closed afterwards.
  int Finish(VnetHdr* hdr, struct iovec* iov, int maxIov);
  void Reset() { active_ = false; }
  // Skip the per-segment TCP checksum check: the frames came authenticated (an
  // AEAD-sealed transport), so nothing between their sender and us altered them.
  void set_trust_checksums(bool trust) { trust_ = trust; }

 private:
  bool active_ = false;
  bool trust_ = false;
  bool v6_ = false;
  size_t l3_ = 0;        // offset of the IP header
  size_t l4_ = 0;        // offset of the TCP header
  size_t hdrLen_ = 0;    // Ethernet + IP + TCP headers
  size_t mss_ = 0;       // payload of the first segment
  size_t payload_ = 0;   // total payload so far
  uint32_t nextSeq_ = 0;
  uint32_t segments_ = 0;
  bool closed_ = false;  // the last segment was short or had PSH: nothing may follow
  uint8_t headers_[128];
  const uint8_t* payloads_[64];
  size_t payloadLens_[64];
};

// TCP checksum of a complete segment (pseudo-header included) is valid.
bool TcpChecksumValid(const uint8_t* frame, size_t len);

}  // namespace etherlink
