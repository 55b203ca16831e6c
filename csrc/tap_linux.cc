// Linux TAP device: open /dev/net/tun, read frames in batches into a JS-owned
// slab, write batches (TSO split/coalesce with IFF_VNET_HDR) with a bounded queue.
#include <napi.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "args.h"
#include "errors.h"
#include "offload.h"
#include "polled_handle.h"
#include "send_queue.h"

namespace etherlink {

namespace {

constexpr const char* kTunPath = "/dev/net/tun";
// Frames one read batch may hold (OFFLOAD_BATCH_FRAMES in lib/io/tap.ts).
constexpr uint32_t kMaxBatchFrames = 1024;
// Larger than any frame slot lib/io/tap.ts uses (FRAME_SLOT).
constexpr uint32_t kMaxSlotSize = 1 << 18;
// Frames one super-frame can become (64 KiB / the smallest sensible MSS), and
// the slab room one read may need: the super-frame itself plus its segments.
constexpr uint32_t kMaxSegments = 64;
constexpr size_t kReadRoom = 2 * kMaxSuperFrame + kMaxSegments * 128;
constexpr int kMaxIov = kMaxSegments + 2;

// Indices into the JS Float64Array of counters; mirrors TapStat in lib/io/native.ts.
enum TapStat {
  kRxFrames = 0,
  kRxBytes,
  kTxFrames,
  kTxBytes,
  kTxDropped,
  kRxErrors,
  kTxErrors,
  kTxQueued,
  kRxBatches,
  kQueueDepth,
  kRxSuperFrames,  // TSO super-frames read and split (vnet mode)
  kTxSuperFrames,  // coalesced super-frames written (vnet mode)
  kStatCount
};

inline bool WouldBlock(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

class Tap : public PolledHandle<Tap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefinePolledClass(env, "Tap",
                             {
                                 InstanceAccessor<&Tap::GetName>("name"),
                                 InstanceAccessor<&Tap::GetIfindex>("ifindex"),
                                 InstanceAccessor<&Tap::GetFd>("fd"),
                                 InstanceAccessor<&Tap::GetOffloads>("offloads"),
                                 InstanceMethod<&Tap::Write>("write"),
                                 InstanceMethod<&Tap::SetTrustChecksums>("setTrustChecksums"),
                             });
  }

  // Tap(opts, onBatch, slab, offsets, lengths, stats)
  explicit Tap(const Napi::CallbackInfo& info) : PolledHandle<Tap>(info) {
    Napi::Env env = info.Env();
    RequireArgs(info, 6, "Tap(opts, onBatch, slab, offsets, lengths, stats)");
    if (!info[0].IsObject()) ThrowCode(env, kErrInvalidArgType, "Tap: opts must be an object");
    if (!info[1].IsFunction()) ThrowCode(env, kErrInvalidArgType, "Tap: onBatch must be a function");
    Napi::Object opts = info[0].As<Napi::Object>();
    Napi::Value name_v = opts.Get("name");
    if (!name_v.IsString()) ThrowCode(env, kErrInvalidArgType, "options.name must be a string");
    std::string name = name_v.As<Napi::String>().Utf8Value();
    batch_size_ = U32Option(opts, "batchSize", 1, kMaxBatchFrames);
    slot_size_ = U32Option(opts, "slotSize", 1, kMaxSlotSize);
    uint32_t queue_cap = U32Option(opts, "writeQueue", 0, kMaxQueueFrames);
    vnet_ = BoolOption(opts, "vnetHdr");

    if (name.size() >= IFNAMSIZ) {
      ThrowErrno(env, EINVAL, "TUNSETIFF",
                 "interface name '" + name + "' is " + std::to_string(name.size()) +
                     " bytes; Linux allows at most " + std::to_string(IFNAMSIZ - 1));
    }

    Span<uint8_t> slab = BytesArg(info[2], "slab");
    Span<uint32_t> offsets = Uint32ArrayArg(info[3], "offsets");
    Span<uint32_t> lengths = Uint32ArrayArg(info[4], "lengths");
    Span<double> stats = Float64ArrayArg(info[5], "stats");
    size_t need = vnet_ ? kReadRoom : static_cast<size_t>(batch_size_) * slot_size_;
    if (offsets.length < batch_size_ || lengths.length < batch_size_ || slab.length < need ||
        stats.length < kStatCount || (vnet_ && batch_size_ < kMaxSegments)) {
      ThrowCode(env, kErrOutOfRange, "Tap: slab, offsets, lengths or stats smaller than batchSize x slotSize");
    }
    slab_ = slab.data;
    slab_len_ = slab.length;
    offsets_ = offsets.data;
    lengths_ = lengths.data;
    stats_ = stats.data;
    for (uint32_t i = 0; i < batch_size_; i++) offsets_[i] = i * slot_size_;

    UniqueFd fd(open(kTunPath, O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (fd.fd < 0) {
      int err = errno;
      ThrowErrno(env, err, "open", std::string("cannot open ") + kTunPath + ": " + ErrnoAdvice(err));
    }
    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_ ? IFF_VNET_HDR : 0);
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd.fd, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      std::string msg = "cannot create TAP device '" + name + "': ";
      if (err == EINVAL) {
        msg += "the name is taken by a device that is not a TAP, or is not a valid interface name";
      } else {
        msg += ErrnoAdvice(err);
      }
      ThrowErrno(env, err, "TUNSETIFF", msg);
    }
    name_ = ifr.ifr_name;
    if (vnet_) ProbeOffloads(fd.fd);
    ifindex_ = IfIndexOf(fd.fd);

    queue_.Init(queue_cap, stats_, {kTxDropped, kTxQueued, kQueueDepth});
    for (size_t i = 2; i <= 5; i++) Pin(info[i]);
    poller().set_error_counter(&stats_[kRxErrors]);
    StartPolling(env, fd.Release(), info[1].As<Napi::Function>(), "etherlink:Tap");
  }

 private:
  friend class PolledHandle<Tap>;

  static int IfIndexOf(int fd) {
    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) return 0;
    UniqueFd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (s.fd < 0) return 0;
    return ioctl(s.fd, SIOCGIFINDEX, &ifr) == 0 ? ifr.ifr_ifindex : 0;
  }

  Napi::Value GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value GetIfindex(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ifindex_); }
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd()); }
  Napi::Value GetOffloads(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), offloads_); }

  // Ask for TSO super-frames and partial checksums; fall back to checksums
  // only, then to nothing (the vnet header still comes, always empty).
  void ProbeOffloads(int fd) {
    if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0) {
      offloads_ = "csum,tso4,tso6";
    } else if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM) == 0) {
      offloads_ = "csum";
    } else {
      offloads_ = "none";
    }
  }

  // One frame out, with an empty vnet header when the device has them.
  ssize_t WriteOne(int fd, const uint8_t* data, size_t len) {
    if (!vnet_) return ::write(fd, data, len);
    VnetHdr h{};
    struct iovec iov[2] = {{&h, sizeof h}, {const_cast<uint8_t*>(data), len}};
    ssize_t n = ::writev(fd, iov, 2);
    return n < 0 ? n : n - static_cast<ssize_t>(sizeof h);
  }

  // vnet mode: coalesce runs of TCP segments from frames[i..] and write them.
  // Returns frames consumed (0 on EAGAIN before anything was written).
  uint32_t WriteCoalesced(int fd, const uint8_t* base, size_t blen, const uint32_t* offs, const uint32_t* lens,
                          uint32_t i, uint32_t count, bool* again) {
    *again = false;
    size_t off = offs[i], len = lens[i];
    if (off + len > blen || len == 0) {
      stats_[kTxErrors]++;
      return 1;
    }
    uint32_t j = i + 1;
    if (coalescer_.Begin(base + off, len)) {
      while (j < count && offs[j] + static_cast<size_t>(lens[j]) <= blen && coalescer_.Append(base + offs[j], lens[j])) j++;
    }
    if (j == i + 1) {
      coalescer_.Reset();
      ssize_t n = WriteOne(fd, base + off, len);
      if (n < 0) {
        if (WouldBlock(errno)) {
          *again = true;
          return 0;
        }
        stats_[kTxErrors]++;
        return 1;
      }
      stats_[kTxFrames]++;
      stats_[kTxBytes] += static_cast<double>(n);
      return 1;
    }
    VnetHdr h;
    struct iovec iov[kMaxIov];
    int niov = coalescer_.Finish(&h, iov, kMaxIov);
    ssize_t n = niov > 0 ? ::writev(fd, iov, niov) : -1;
    if (n < 0) {
      if (niov > 0 && WouldBlock(errno)) {
        *again = true;
        return 0;
      }
      stats_[kTxErrors] += j - i;
      return j - i;
    }
    stats_[kTxFrames] += j - i;
    stats_[kTxSuperFrames]++;
    stats_[kTxBytes] += static_cast<double>(n) - sizeof h;
    return j - i;
  }

  // setTrustChecksums(trust): see Coalescer::set_trust_checksums.
  Napi::Value SetTrustChecksums(const Napi::CallbackInfo& info) {
    RequireArgs(info, 1, "setTrustChecksums(trust)");
    if (!info[0].IsBoolean()) ThrowCode(info.Env(), kErrInvalidArgType, "setTrustChecksums: trust must be a boolean");
    coalescer_.set_trust_checksums(info[0].As<Napi::Boolean>().Value());
    return info.Env().Undefined();
  }

  // write(buf, offsets, lengths, count) -> frames written or queued.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed()) ThrowErrno(env, EBADF, "write", "the TAP device is closed");
    RequireArgs(info, 4, "write(buf, offsets, lengths, count)");
    Span<uint8_t> buf = BytesArg(info[0], "buf");
    Span<uint32_t> offs = Uint32ArrayArg(info[1], "offsets");
    Span<uint32_t> lens = Uint32ArrayArg(info[2], "lengths");
    uint32_t count = static_cast<uint32_t>(CountArg(info[3], {{"offsets", offs.length}, {"lengths", lens.length}}));
    const int fd = this->fd();
    const uint8_t* base = buf.data;
    size_t blen = buf.length;
    uint32_t accepted = 0;
    uint32_t i = 0;
    // Frames queued earlier must go first, or order breaks.
    if (queue_.empty() && vnet_) {
      while (i < count) {
        bool again = false;
        uint32_t used = WriteCoalesced(fd, base, blen, offs.data, lens.data, i, count, &again);
        if (again) break;
        accepted += used;
        i += used;
      }
    } else if (queue_.empty()) {
      for (; i < count; i++) {
        size_t off = offs.data[i], len = lens.data[i];
        if (off + len > blen || len == 0) {
          stats_[kTxErrors]++;
          continue;
        }
        ssize_t n = ::write(fd, base + off, len);
        if (n < 0) {
          if (errno == EINTR) {
            i--;
            continue;
          }
          if (WouldBlock(errno)) break;
          stats_[kTxErrors]++;
          continue;
        }
        stats_[kTxFrames]++;
        stats_[kTxBytes] += static_cast<double>(n);
        accepted++;
      }
    }
    for (; i < count; i++) {
      size_t off = offs.data[i], len = lens.data[i];
      if (off + len > blen || len == 0) {
        stats_[kTxErrors]++;
        continue;
      }
      if (queue_.Push(base + off, len)) accepted++;
    }
    if (!queue_.empty()) WantWritable(true);
    return Napi::Number::New(env, accepted);
  }

  void OnWritable() {
    const int fd = this->fd();
    while (!queue_.empty()) {
      auto& frame = queue_.At(0).bytes;
      ssize_t n = WriteOne(fd, frame.data(), frame.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        if (WouldBlock(errno)) break;
        stats_[kTxErrors]++;
      } else {
        stats_[kTxFrames]++;
        stats_[kTxBytes] += static_cast<double>(n);
      }
      queue_.Pop();
    }
    if (queue_.empty()) WantWritable(false);
  }

  void OnClosed() { queue_.Release(); }

  // vnet mode: read into the slab, split TSO super-frames after them (the
  // super-frame's bytes stay behind as a hole: offsets are arbitrary).
  bool ReadVnet(int fd, uint32_t* countp, size_t* usedp) {
    VnetHdr h;
    uint8_t* dst = slab_ + *usedp;
    struct iovec iov[2] = {{&h, sizeof h}, {dst, kMaxSuperFrame}};
    ssize_t n = ::readv(fd, iov, 2);
    if (n < 0) {
      if (errno == EINTR) return true;
      if (!WouldBlock(errno)) stats_[kRxErrors]++;
      return false;
    }
    if (n <= static_cast<ssize_t>(sizeof h)) return n > 0;
    size_t len = static_cast<size_t>(n) - sizeof h;
    if ((h.gso_type & ~kGsoEcn) != kGsoNone) {
      size_t out = *usedp + len;
      uint32_t before = *countp;
      if (GsoSplit(dst, len, h, slab_, slab_len_, &out, offsets_, lengths_, batch_size_, countp)) {
        stats_[kRxSuperFrames]++;
        for (uint32_t k = before; k < *countp; k++) {
          stats_[kRxFrames]++;
          stats_[kRxBytes] += lengths_[k];
        }
        *usedp = out;
      } else {
        stats_[kRxErrors]++;
      }
      return true;
    }
    if ((h.flags & kVnetNeedsCsum) && !CompleteChecksum(dst, len, h.csum_start, h.csum_offset)) {
      stats_[kRxErrors]++;
      return true;
    }
    offsets_[*countp] = static_cast<uint32_t>(*usedp);
    lengths_[*countp] = static_cast<uint32_t>(len);
    (*countp)++;
    *usedp += len;
    stats_[kRxFrames]++;
    stats_[kRxBytes] += static_cast<double>(len);
    return true;
  }

  void OnReadable() {
    const int fd = this->fd();
    for (int b = 0; b < kMaxBatchesPerWake && !closed() && !paused(); b++) {
      uint32_t count = 0;
      bool drained = false;
      if (vnet_) {
        size_t used = 0;
        while (count + kMaxSegments <= batch_size_ && used + kReadRoom <= slab_len_) {
          if (!ReadVnet(fd, &count, &used)) {
            drained = true;
            break;
          }
        }
      }
      while (!vnet_ && count < batch_size_) {
        ssize_t n = ::read(fd, slab_ + static_cast<size_t>(count) * slot_size_, slot_size_);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (!WouldBlock(errno)) stats_[kRxErrors]++;
          drained = true;
          break;
        }
        if (n == 0) {
          drained = true;
          break;
        }
        lengths_[count] = static_cast<uint32_t>(n);
        stats_[kRxFrames]++;
        stats_[kRxBytes] += static_cast<double>(n);
        count++;
      }
      if (count > 0) {
        stats_[kRxBatches]++;
        // JS may close us inside the callback: the fd is gone then.
        if (!Deliver(count)) return;
      }
      if (drained) break;
    }
  }

  std::string name_;
  int ifindex_ = 0;
  uint32_t batch_size_ = 0;
  uint32_t slot_size_ = 0;
  uint8_t* slab_ = nullptr;
  size_t slab_len_ = 0;
  bool vnet_ = false;
  std::string offloads_ = "none";
  Coalescer coalescer_;
  uint32_t* offsets_ = nullptr;
  uint32_t* lengths_ = nullptr;
  double* stats_ = nullptr;
  SendQueue<> queue_;
};

Napi::Object InitTap(Napi::Env env, Napi::Object exports) {
  exports.Set("Tap", Tap::Define(env));
  return exports;
}

}  // namespace etherlink
