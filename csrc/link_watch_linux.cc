// Link watcher: a NETLINK_ROUTE socket subscribed to RTMGRP_LINK, polled on
// Node's loop, turning RTM_NEWLINK/RTM_DELLINK into (ifindex, flags, kind) batches.
#include <napi.h>

#include <net/if.h>  // before any linux/ header, or the two definitions clash
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "polled_handle.h"

namespace etherlink {
namespace {

// One event in the JS Uint32Array: ifindex, flags (ifi_flags: IFF_UP,
// IFF_RUNNING, IFF_LOWER_UP...), kind. Mirrors LINK_EVENT_FIELDS in lib/io/native.ts.
constexpr size_t kLinkEventFields = 3;
enum LinkEventKind : uint32_t {
  kLinkChanged = 0,  // RTM_NEWLINK: created or changed
  kLinkRemoved = 1,  // RTM_DELLINK: deleted, or moved to another namespace
  kLinkOverrun = 2,  // the socket buffer overflowed (ENOBUFS): events were lost, query again
};
// One receive holds one or more whole messages; an RTM_NEWLINK with all its
// attributes is a few KiB (iproute2 uses 32 KiB too).
constexpr size_t kRecvBufferSize = 32 * 1024;

class LinkWatcher : public PolledHandle<LinkWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) { return DefinePolledClass(env, "LinkWatcher", {}); }

  // LinkWatcher(onBatch, events): onBatch(count) finds count events in events.
  explicit LinkWatcher(const Napi::CallbackInfo& info) : PolledHandle<LinkWatcher>(info) {
    Napi::Env env = info.Env();
    RequireArgs(info, 2, "LinkWatcher(onBatch, events)");
    if (!info[0].IsFunction()) ThrowCode(env, kErrInvalidArgType, "LinkWatcher: onBatch must be a function");
    Span<uint32_t> events = Uint32ArrayArg(info[1], "events");
    capacity_ = events.length / kLinkEventFields;
    if (capacity_ == 0) {
      ThrowCode(env, kErrOutOfRange, "LinkWatcher: events must hold at least one event (3 x u32)");
    }
    events_ = events.data;
    buf_.resize(kRecvBufferSize);

    // Receiving RTMGRP_LINK needs no privilege: this works after capabilities are dropped.
    UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (fd.fd < 0) {
      int err = errno;
      ThrowErrno(env, err, "socket", "cannot open a netlink socket to watch links: " + ErrnoAdvice(err));
    }
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_LINK;
    if (::bind(fd.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      int err = errno;
      ThrowErrno(env, err, "bind", "cannot subscribe to link events (RTMGRP_LINK): " + ErrnoAdvice(err));
    }
    Pin(info[1]);
    StartPolling(env, fd.Release(), info[0].As<Napi::Function>(), "etherlink:LinkWatcher");
  }

 private:
  friend class PolledHandle<LinkWatcher>;

  void Push(uint32_t ifindex, uint32_t flags, LinkEventKind kind) {
    uint32_t* e = events_ + count_ * kLinkEventFields;
    e[0] = ifindex;
    e[1] = flags;
    e[2] = kind;
    count_++;
  }

  // False when delivery must stop (closed inside the callback).
  bool Flush() {
    if (count_ == 0) return true;
    uint32_t n = count_;
    count_ = 0;
    return Deliver(n);
  }

  void Parse(size_t len) {
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf_.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) continue;
      const auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
      if (count_ == capacity_ && !Flush()) return;
      Push(static_cast<uint32_t>(ifi->ifi_index), ifi->ifi_flags,
           h->nlmsg_type == RTM_DELLINK ? kLinkRemoved : kLinkChanged);
    }
  }

  void OnReadable() {
    const int fd = this->fd();
    for (int b = 0; b < kMaxBatchesPerWake && !closed() && !paused(); b++) {
      sockaddr_nl from{};
      iovec iov = {buf_.data(), buf_.size()};
      msghdr msg{};
      msg.msg_name = &from;
      msg.msg_namelen = sizeof from;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          if (count_ == capacity_ && !Flush()) return;
          Push(0, 0, kLinkOverrun);
          continue;
        }
        break;  // EAGAIN: drained
      }
      // Only the kernel speaks for links; a truncated message is not worth guessing at.
      if (from.nl_pid != 0 || (msg.msg_flags & MSG_TRUNC)) continue;
      Parse(static_cast<size_t>(n));
      if (closed()) return;
    }
    if (!closed()) Flush();
  }

  uint32_t* events_ = nullptr;
  size_t capacity_ = 0;
  uint32_t count_ = 0;
  std::vector<uint8_t> buf_;
};

}  // namespace

Napi::Object InitLinkWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("LinkWatcher", LinkWatcher::Define(env));
  return exports;
}

}  // namespace etherlink
