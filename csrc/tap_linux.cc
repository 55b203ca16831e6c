// Linux TAP device: open /dev/net/tun, poll the fd on Node's own libuv loop,
// read frames in batches into a JS-owned slab, write batches with a bounded queue.
#include <napi.h>
#include <uv.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "offload.h"

namespace etherlink {

namespace {

constexpr const char* kTunPath = "/dev/net/tun";
// Frames one read batch may hold (OFFLOAD_BATCH_FRAMES in lib/io/tap.ts).
constexpr uint32_t kMaxBatchFrames = 1024;
// Larger than any frame slot lib/io/tap.ts uses (FRAME_SLOT).
constexpr uint32_t kMaxSlotSize = 1 << 18;
// Most frames waiting for writability (the writeQueue option's ceiling).
constexpr uint32_t kMaxWriteQueue = 1 << 16;
// Batches read per readable wake-up before yielding back to the loop, so one
// busy device cannot starve the others.
constexpr int kMaxBatchesPerWake = 4;
// Frames one super-frame can become (64 KiB / the smallest sensible MSS), and
// the slab room one read may need: the super-frame itself plus its segments.
constexpr uint32_t kMaxSegments = 64;
constexpr size_t kReadRoom = 2 * kMaxSuperFrame + kMaxSegments * 128;
constexpr int kMaxIov = kMaxSegments + 2;

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

}  // namespace

class Tap : public Napi::ObjectWrap<Tap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tap",
                       {
                           InstanceAccessor<&Tap::GetName>("name"),
                           InstanceAccessor<&Tap::GetIfindex>("ifindex"),
                           InstanceAccessor<&Tap::GetFd>("fd"),
                           InstanceAccessor<&Tap::GetOffloads>("offloads"),
                           InstanceMethod<&Tap::Write>("write"),
                           InstanceMethod<&Tap::Pause>("pause"),
                           InstanceMethod<&Tap::Resume>("resume"),
                           InstanceMethod<&Tap::Ref>("ref"),
                           InstanceMethod<&Tap::Unref>("unref"),
                           InstanceMethod<&Tap::Close>("close"),
                       });
  }

  Tap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tap>(info) {
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
    queue_cap_ = U32Option(opts, "writeQueue", 0, kMaxWriteQueue);
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
    on_batch_ = Napi::Persistent(info[1].As<Napi::Function>());
    slab_ref_ = Napi::Persistent(info[2].As<Napi::Object>());
    offsets_ref_ = Napi::Persistent(info[3].As<Napi::Object>());
    lengths_ref_ = Napi::Persistent(info[4].As<Napi::Object>());
    stats_ref_ = Napi::Persistent(info[5].As<Napi::Object>());
    for (uint32_t i = 0; i < batch_size_; i++) offsets_[i] = i * slot_size_;

    fd_ = open(kTunPath, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) {
      int err = errno;
      ThrowErrno(env, err, "open", std::string("cannot open ") + kTunPath + ": " + ErrnoAdvice(err));
    }
    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_ ? IFF_VNET_HDR : 0);
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd_, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      close(fd_);
      fd_ = -1;
      std::string msg = "cannot create TAP device '" + name + "': ";
      if (err == EINVAL) {
        msg += "the name is taken by a device that is not a TAP, or is not a valid interface name";
      } else {
        msg += ErrnoAdvice(err);
      }
      ThrowErrno(env, err, "TUNSETIFF", msg);
    }
    name_ = ifr.ifr_name;
    if (vnet_) ProbeOffloads();
    ifindex_ = if_index_of(fd_);

    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = static_cast<uv_poll_t*>(malloc(sizeof(uv_poll_t)));
    uv_poll_init(loop, poll_, fd_);
    poll_->data = this;
    async_context_ = std::make_unique<Napi::AsyncContext>(env, "etherlink:Tap");
    napi_add_env_cleanup_hook(env, &Tap::CleanupHook, this);
    cleanup_registered_ = true;
    Ref();  // keep the wrapper alive while the poll handle is open
    UpdatePoll();
  }

  ~Tap() override { Shutdown(false); }

 private:
  static int if_index_of(int fd) {
    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof ifr);
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) return 0;
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return 0;
    int idx = 0;
    if (ioctl(s, SIOCGIFINDEX, &ifr) == 0) idx = ifr.ifr_ifindex;
    close(s);
    return idx;
  }

  Napi::Value GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value GetIfindex(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ifindex_); }
  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value GetOffloads(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), offloads_); }

  // Ask for TSO super-frames and partial checksums; fall back to checksums
  // only, then to nothing (the vnet header still comes, always empty).
  void ProbeOffloads() {
    if (ioctl(fd_, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0) {
      offloads_ = "csum,tso4,tso6";
    } else if (ioctl(fd_, TUNSETOFFLOAD, TUN_F_CSUM) == 0) {
      offloads_ = "csum";
    } else {
      offloads_ = "none";
    }
  }

  // One frame out, with an empty vnet header when the device has them.
  ssize_t WriteOne(const uint8_t* data, size_t len) {
    if (!vnet_) return ::write(fd_, data, len);
    VnetHdr h{};
    struct iovec iov[2] = {{&h, sizeof h}, {const_cast<uint8_t*>(data), len}};
    ssize_t n = ::writev(fd_, iov, 2);
    return n < 0 ? n : n - static_cast<ssize_t>(sizeof h);
  }

  // vnet mode: coalesce runs of TCP segments from frames[i..] and write them.
  // Returns frames consumed (0 on EAGAIN before anything was written).
  uint32_t WriteCoalesced(const uint8_t* base, size_t blen, const uint32_t* offs, const uint32_t* lens, uint32_t i,
                          uint32_t count, bool* again) {
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
      ssize_t n = WriteOne(base + off, len);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
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
    ssize_t n = niov > 0 ? ::writev(fd_, iov, niov) : -1;
    if (n < 0) {
      if (niov > 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
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

  // write(buf, offsets, lengths, count) -> frames written or queued.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) ThrowErrno(env, EBADF, "write", "the TAP device is closed");
    RequireArgs(info, 4, "write(buf, offsets, lengths, count)");
    Span<uint8_t> buf = BytesArg(info[0], "buf");
    Span<uint32_t> offs_arg = Uint32ArrayArg(info[1], "offsets");
    Span<uint32_t> lens_arg = Uint32ArrayArg(info[2], "lengths");
    uint32_t count =
        static_cast<uint32_t>(CountArg(info[3], {{"offsets", offs_arg.length}, {"lengths", lens_arg.length}}));
    const uint32_t* offs = offs_arg.data;
    const uint32_t* lens = lens_arg.data;
    const uint8_t* base = buf.data;
    size_t blen = buf.length;
    uint32_t accepted = 0;
    uint32_t i = 0;
    // Frames queued earlier must go first, or order breaks.
    if (queue_len_ == 0 && vnet_) {
      while (i < count) {
        bool again = false;
        uint32_t used = WriteCoalesced(base, blen, offs, lens, i, count, &again);
        if (again) break;
        accepted += used;
        i += used;
      }
    } else if (queue_len_ == 0) {
      for (; i < count; i++) {
        size_t off = offs[i], len = lens[i];
        if (off + len > blen || len == 0) {
          stats_[kTxErrors]++;
          continue;
        }
        ssize_t n = ::write(fd_, base + off, len);
        if (n < 0) {
          if (errno == EINTR) {
            i--;
            continue;
          }
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          stats_[kTxErrors]++;
          continue;
        }
        stats_[kTxFrames]++;
        stats_[kTxBytes] += static_cast<double>(n);
        accepted++;
      }
    }
    for (; i < count; i++) {
      size_t off = offs[i], len = lens[i];
      if (off + len > blen || len == 0) {
        stats_[kTxErrors]++;
        continue;
      }
      if (Enqueue(base + off, len)) accepted++;
    }
    if (queue_len_ > 0) UpdatePoll();
    return Napi::Number::New(env, accepted);
  }

  bool Enqueue(const uint8_t* data, size_t len) {
    if (queue_len_ >= queue_cap_) {
      stats_[kTxDropped]++;
      return false;
    }
    if (queue_.size() < queue_cap_) queue_.resize(queue_cap_);
    std::vector<uint8_t>& slot = queue_[(queue_head_ + queue_len_) % queue_cap_];
    slot.assign(data, data + len);  // reuses capacity after warm-up
    queue_len_++;
    stats_[kTxQueued]++;
    stats_[kQueueDepth] = queue_len_;
    return true;
  }

  void FlushQueue() {
    while (queue_len_ > 0) {
      std::vector<uint8_t>& slot = queue_[queue_head_];
      ssize_t n = WriteOne(slot.data(), slot.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        stats_[kTxErrors]++;
      } else {
        stats_[kTxFrames]++;
        stats_[kTxBytes] += static_cast<double>(n);
      }
      queue_head_ = (queue_head_ + 1) % queue_cap_;
      queue_len_--;
    }
    stats_[kQueueDepth] = queue_len_;
  }

  Napi::Value Pause(const Napi::CallbackInfo& info) {
    paused_ = true;
    UpdatePoll();
    return info.Env().Undefined();
  }
  Napi::Value Resume(const Napi::CallbackInfo& info) {
    paused_ = false;
    UpdatePoll();
    return info.Env().Undefined();
  }
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (!closed_) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (!closed_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    return info.Env().Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown(true);
    return info.Env().Undefined();
  }

  void UpdatePoll() {
    if (closed_) return;
    int events = 0;
    if (!paused_) events |= UV_READABLE;
    if (queue_len_ > 0) events |= UV_WRITABLE;
    if (events == 0) {
      uv_poll_stop(poll_);
    } else {
      uv_poll_start(poll_, events, &Tap::OnPoll);
    }
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    Tap* self = static_cast<Tap*>(handle->data);
    if (self->closed_) return;
    if (status < 0) {
      self->stats_[kRxErrors]++;
      return;
    }
    if (events & UV_WRITABLE) {
      self->FlushQueue();
      if (self->queue_len_ == 0) self->UpdatePoll();
    }
    if ((events & UV_READABLE) && !self->paused_) self->ReadBatches();
  }

  // vnet mode: read into the slab, split TSO super-frames after them (the
  // super-frame's bytes stay behind as a hole: offsets are arbitrary).
  bool ReadVnet(uint32_t* countp, size_t* usedp) {
    VnetHdr h;
    uint8_t* dst = slab_ + *usedp;
    struct iovec iov[2] = {{&h, sizeof h}, {dst, kMaxSuperFrame}};
    ssize_t n = ::readv(fd_, iov, 2);
    if (n < 0) {
      if (errno == EINTR) return true;
      if (errno != EAGAIN && errno != EWOULDBLOCK) stats_[kRxErrors]++;
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

  void ReadBatches() {
    Napi::Env env = Env();
    for (int b = 0; b < kMaxBatchesPerWake && !closed_ && !paused_; b++) {
      uint32_t count = 0;
      bool drained = false;
      if (vnet_) {
        size_t used = 0;
        while (count + kMaxSegments <= batch_size_ && used + kReadRoom <= slab_len_) {
          if (!ReadVnet(&count, &used)) {
            drained = true;
            break;
          }
        }
      }
      while (!vnet_ && count < batch_size_) {
        ssize_t n = ::read(fd_, slab_ + static_cast<size_t>(count) * slot_size_, slot_size_);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK) stats_[kRxErrors]++;
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
        Napi::HandleScope scope(env);
        napi_value argv[1] = {Napi::Number::New(env, count)};
        Napi::Object self = Value();
        // MakeCallback so microtasks queued by JS run after each batch.
        in_callback_ = true;
        on_batch_.MakeCallback(self, 1, argv, *async_context_);
        in_callback_ = false;
        // JS may have closed us inside the callback: the fd is gone then.
        if (unref_after_callback_) {
          unref_after_callback_ = false;
          Unref();
          return;
        }
      }
      if (drained) break;
    }
  }

  static void CleanupHook(void* arg) {
    Tap* self = static_cast<Tap*>(arg);
    self->cleanup_registered_ = false;
    self->Shutdown(false);
  }

  // from_js: called by close(); otherwise from the destructor or env teardown.
  void Shutdown(bool from_js) {
    if (closed_) return;
    closed_ = true;
    if (cleanup_registered_) {
      napi_remove_env_cleanup_hook(Env(), &Tap::CleanupHook, this);
      cleanup_registered_ = false;
    }
    if (poll_ != nullptr) {
      // Stop and close synchronously drop the fd from epoll, so the fd can
      // close now. The handle itself is freed by libc's free(): a callback in
      // this module could run after a worker has unloaded the addon.
      uv_poll_stop(poll_);
      poll_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), reinterpret_cast<uv_close_cb>(free));
      poll_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (from_js) {
      // Inside onBatch the native frame still uses this object: let go after it returns.
      if (in_callback_) {
        unref_after_callback_ = true;
      } else {
        Unref();
      }
    }
  }

  // ObjectWrap::Unref is hidden by our JS-facing Unref(info); reach the base explicitly.
  void Unref() { Napi::ObjectWrap<Tap>::Unref(); }
  void Ref() { Napi::ObjectWrap<Tap>::Ref(); }

  std::string name_;
  int ifindex_ = 0;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  bool closed_ = false;
  bool paused_ = false;
  bool cleanup_registered_ = false;
  bool in_callback_ = false;
  bool unref_after_callback_ = false;

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
  Napi::FunctionReference on_batch_;
  Napi::ObjectReference slab_ref_, offsets_ref_, lengths_ref_, stats_ref_;
  std::unique_ptr<Napi::AsyncContext> async_context_;

  std::vector<std::vector<uint8_t>> queue_;
  uint32_t queue_cap_ = 0;
  uint32_t queue_head_ = 0;
  uint32_t queue_len_ = 0;
};

Napi::Object InitTap(Napi::Env env, Napi::Object exports) {
  exports.Set("Tap", Tap::Define(env));
  return exports;
}

}  // namespace etherlink
