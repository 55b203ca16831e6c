// UDP underlay socket: batched recvmmsg/sendmmsg polled on Node's own loop,
// moving datagrams between the kernel and JS-owned slabs (lib/udp.ts owns them).
#include <arpa/inet.h>
#include <napi.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"

namespace etherlink {
namespace {

// Indices into the JS Float64Array of counters; mirrors UdpStat in lib/native.ts.
enum UdpStatIndex : size_t {
  kRxDatagrams = 0,
  kRxBytes = 1,
  kTxDatagrams = 2,
  kTxBytes = 3,
  kTxDropped = 4,
  kRxErrors = 5,
  kTxErrors = 6,
  kTxQueued = 7,
  kRxBatches = 8,
  kQueueDepth = 9,
  kRxTruncated = 10,
  kTxGsoSends = 11,   // sendmmsg messages that carried several datagrams (UDP_SEGMENT)
  kRxGroMessages = 12, // received messages that held several datagrams (UDP_GRO)
  kUdpStatCount = 13,
};

// One normalized address: 16 bytes IPv6 (IPv4 mapped), 2 bytes port (network order), 2 reserved.
constexpr size_t kAddrSlot = 20;
constexpr size_t kAddrPortOffset = 16;
// The kernel caps recvmmsg/sendmmsg vectors at UIO_MAXIOV (1024).
constexpr size_t kMaxBatchSize = 1024;
// Larger than any UDP payload (65535 - headers); offsets stay well within uint32.
constexpr size_t kMaxSlotSize = 1 << 18;
constexpr size_t kMaxSendQueue = 1 << 16;
// Bound the work per wake-up so TAP devices and timers on the same loop get their turn.
constexpr int kMaxBatchesPerWake = 4;
// sendmmsg scratch arrays hold at least this many datagrams per syscall.
constexpr size_t kMinTxChunk = 64;
// UDP GSO/GRO (Linux >= 4.18 / 5.0): segments per GSO send (the kernel allows 64
// or 128), bytes per GSO send, and how many datagrams one GRO receive may
// hold — the JS arrays are sized batchSize x kMaxGroSegments with offload on.
constexpr size_t kMaxGsoSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;
constexpr size_t kMaxGroSegments = 64;
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

const uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct FdGuard {
  int fd = -1;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int Release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

// A datagram that met EAGAIN/ENOBUFS and waits for UV_WRITABLE. Its vector keeps
// its capacity across reuse, so a steady state of queueing never allocates.
struct QueuedDatagram {
  std::vector<uint8_t> data;
  sockaddr_storage name;
  socklen_t name_len = 0;
};

std::string SocketAdvice(int err) {
  switch (err) {
    case EADDRNOTAVAIL:
      return "the address is not assigned to any interface in this network namespace: "
             "bind '::' or '0.0.0.0', or an address shown by `ip addr`";
    case EAFNOSUPPORT:
      return "IPv6 is disabled on this host: bind an IPv4 address such as '0.0.0.0'";
    case EADDRINUSE:
      return ErrnoAdvice(err) + " (port 0 lets the kernel pick a free one)";
    default:
      return ErrnoAdvice(err);
  }
}

struct BindAddress {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
  bool any6 = false;  // '::' gets dual stack
  uint32_t scope_id = 0;
};

// Accepts IPv4 and IPv6 literals, optionally bracketed, IPv6 optionally with %zone.
bool ParseBindAddress(std::string text, uint16_t port, BindAddress* out) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  std::string zone;
  size_t pct = text.find('%');
  if (pct != std::string::npos) {
    zone = text.substr(pct + 1);
    text.resize(pct);
  }
  in6_addr a6;
  in_addr a4;
  if (inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
    if (!zone.empty()) {
      out->scope_id = if_nametoindex(zone.c_str());
      if (out->scope_id == 0) {
        char* end = nullptr;
        unsigned long n = std::strtoul(zone.c_str(), &end, 10);
        if (end == zone.c_str() || *end != '\0') return false;
        out->scope_id = static_cast<uint32_t>(n);
      }
    }
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&out->ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    s6->sin6_addr = a6;
    s6->sin6_scope_id = out->scope_id;
    out->len = sizeof(sockaddr_in6);
    out->family = AF_INET6;
    out->any6 = IN6_IS_ADDR_UNSPECIFIED(&a6);
    return true;
  }
  if (zone.empty() && inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&out->ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    s4->sin_addr = a4;
    out->len = sizeof(sockaddr_in);
    out->family = AF_INET;
    return true;
  }
  return false;
}

// Write a kernel source address into one 20-byte slot.
void WriteAddrSlot(uint8_t* out, const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    std::memcpy(out, &s6->sin6_addr, 16);
    std::memcpy(out + kAddrPortOffset, &s6->sin6_port, 2);
  } else if (ss.ss_family == AF_INET) {
    const auto* s4 = reinterpret_cast<const sockaddr_in*>(&ss);
    std::memcpy(out, kV4MappedPrefix, 12);
    std::memcpy(out + 12, &s4->sin_addr, 4);
    std::memcpy(out + kAddrPortOffset, &s4->sin_port, 2);
  } else {
    std::memset(out, 0, kAddrPortOffset + 2);
  }
  out[18] = 0;
  out[19] = 0;
}

class UdpSocket : public Napi::ObjectWrap<UdpSocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UdpSocket",
                       {
                           InstanceAccessor<&UdpSocket::GetPort>("port"),
                           InstanceAccessor<&UdpSocket::GetFamily>("family"),
                           InstanceAccessor<&UdpSocket::GetOffloads>("offloads"),
                           InstanceMethod<&UdpSocket::Send>("send"),
                           InstanceMethod<&UdpSocket::Pause>("pause"),
                           InstanceMethod<&UdpSocket::Resume>("resume"),
                           InstanceMethod<&UdpSocket::RefHandle>("ref"),
                           InstanceMethod<&UdpSocket::UnrefHandle>("unref"),
                           InstanceMethod<&UdpSocket::Close>("close"),
                       });
  }

  explicit UdpSocket(const Napi::CallbackInfo& info);
  ~UdpSocket() override;

 private:
  Napi::Value GetPort(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }
  Napi::Value GetOffloads(const Napi::CallbackInfo& info) {
    std::string o = gso_ && gro_ ? "gso,gro" : gso_ ? "gso" : gro_ ? "gro" : "none";
    return Napi::String::New(info.Env(), o);
  }
  Napi::Value GetFamily(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), family_ == AF_INET6 ? 6 : 4);
  }
  Napi::Value Send(const Napi::CallbackInfo& info);
  void Pause(const Napi::CallbackInfo&) {
    paused_ = true;
    UpdatePoll();
  }
  void Resume(const Napi::CallbackInfo&) {
    paused_ = false;
    UpdatePoll();
  }
  void RefHandle(const Napi::CallbackInfo&) {
    if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
  }
  void UnrefHandle(const Napi::CallbackInfo&) {
    if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  }
  void Close(const Napi::CallbackInfo&);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnEnvCleanup(void* arg);
  void ReadBatches();
  bool DeliverBatch(uint32_t count);
  void UpdatePoll();
  void FlushQueue();
  socklen_t ToSockaddr(const uint8_t* slot, sockaddr_storage* ss) const;
  uint32_t Enqueue(const uint8_t* data, size_t len, const sockaddr_storage& name, socklen_t name_len);
  void CloseHandles();
  void ReleaseJs();

  int fd_ = -1;
  int family_ = AF_INET6;
  uint16_t port_ = 0;
  uint32_t scope_id_ = 0;  // applied to link-local destinations; the 20-byte slot has no room for a zone
  uv_poll_t* poll_ = nullptr;  // malloc'd: uv_close finishes after this object (and maybe the addon) is gone
  int poll_events_ = 0;
  bool closed_ = false;
  bool paused_ = false;
  bool in_callback_ = false;
  bool release_pending_ = false;
  bool hook_registered_ = false;
  bool self_ref_ = false;

  // JS-owned memory, pinned by references for as long as the socket is open.
  Napi::FunctionReference on_batch_;
  Napi::Reference<Napi::Value> rx_slab_ref_, rx_offsets_ref_, rx_lengths_ref_, rx_addrs_ref_, stats_ref_;
  std::unique_ptr<Napi::AsyncContext> async_;
  uint8_t* rx_slab_ = nullptr;
  uint32_t* rx_offsets_ = nullptr;
  uint32_t* rx_lengths_ = nullptr;
  uint8_t* rx_addrs_ = nullptr;
  double* stats_ = nullptr;
  size_t batch_size_ = 0;
  size_t slot_size_ = 0;
  size_t rx_capacity_ = 0;
  bool gso_ = false;
  bool gro_ = false;
  static constexpr size_t kCtrlSize = 64;  // CMSG_SPACE of one int or u16, generously
  std::vector<uint8_t> rx_ctrl_, tx_ctrl_;
  std::vector<uint32_t> tx_segs_, tx_seg_size_;

  // Kernel-facing scratch, sized once at construction.
  std::vector<mmsghdr> rx_msgs_;
  std::vector<iovec> rx_iov_;
  std::vector<sockaddr_storage> rx_names_;
  std::vector<mmsghdr> tx_msgs_;
  std::vector<iovec> tx_iov_;
  std::vector<sockaddr_storage> tx_names_;

  // Bounded ring of datagrams waiting for the socket to become writable.
  std::vector<QueuedDatagram> queue_;
  size_t q_head_ = 0;
  size_t q_len_ = 0;
};

UdpSocket::UdpSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpSocket>(info) {
  Napi::Env env = info.Env();
  RequireArgs(info, 7, "UdpSocket(opts, onBatch, rxSlab, rxOffsets, rxLengths, rxAddrs, stats)");
  if (!info[0].IsObject()) ThrowCode(env, kErrInvalidArgType, "UdpSocket: opts must be an object");
  if (!info[1].IsFunction()) ThrowCode(env, kErrInvalidArgType, "UdpSocket: onBatch must be a function");
  Napi::Object opts = info[0].As<Napi::Object>();
  Napi::Value addr_v = opts.Get("address");
  if (!addr_v.IsString()) ThrowCode(env, kErrInvalidArgType, "options.address must be a string");
  std::string address = addr_v.As<Napi::String>().Utf8Value();
  uint16_t req_port = static_cast<uint16_t>(U32Option(opts, "port", 0, 65535));
  batch_size_ = U32Option(opts, "batchSize", 1, kMaxBatchSize);
  slot_size_ = U32Option(opts, "slotSize", 1, kMaxSlotSize);
  size_t send_queue = U32Option(opts, "sendQueue", 0, kMaxSendQueue);
  uint32_t socket_buffer = U32Option(opts, "socketBuffer", 0, INT32_MAX);
  bool offload = BoolOption(opts, "offload");

  Span<uint8_t> slab = BytesArg(info[2], "rxSlab");
  Span<uint32_t> offsets = Uint32ArrayArg(info[3], "rxOffsets");
  Span<uint32_t> lengths = Uint32ArrayArg(info[4], "rxLengths");
  Span<uint8_t> addrs = BytesArg(info[5], "rxAddrs");
  Span<double> stats = Float64ArrayArg(info[6], "stats");
  rx_slab_ = slab.data;
  rx_offsets_ = offsets.data;
  rx_lengths_ = lengths.data;
  rx_addrs_ = addrs.data;
  stats_ = stats.data;
  size_t slab_len = slab.length, offsets_len = offsets.length, lengths_len = lengths.length;
  size_t addrs_len = addrs.length, stats_len = stats.length;
  rx_capacity_ = offload ? batch_size_ * kMaxGroSegments : batch_size_;
  if (slab_len < batch_size_ * slot_size_ || offsets_len < rx_capacity_ || lengths_len < rx_capacity_ ||
      addrs_len < rx_capacity_ * kAddrSlot || stats_len < kUdpStatCount) {
    ThrowCode(env, kErrOutOfRange, "receive slabs are smaller than batchSize x slotSize / batchSize x ADDR_SLOT (see lib/udp.ts)");
  }

  BindAddress bind_addr;
  if (!ParseBindAddress(address, req_port, &bind_addr)) {
    ThrowCode(env, kErrInvalidAddress,
              "invalid bind address '" + address + "': use an IPv4 or IPv6 literal such as '::', '0.0.0.0' or '::1'");
  }

  FdGuard fd;
  fd.fd = ::socket(bind_addr.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd.fd < 0 && errno == EAFNOSUPPORT && bind_addr.any6) {
    // No IPv6 in this kernel: the wildcard still works as plain IPv4.
    ParseBindAddress("0.0.0.0", req_port, &bind_addr);
    fd.fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd.fd < 0) {
    int err = errno;
    ThrowErrno(env, err, "socket", "cannot create a UDP socket: " + SocketAdvice(err));
  }
  family_ = bind_addr.family;
  scope_id_ = bind_addr.scope_id;
  if (bind_addr.any6) {
    int off = 0;
    ::setsockopt(fd.fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));  // dual stack; failure leaves v6-only
  }
  if (socket_buffer > 0) {
    // FORCE variants pass net.core.[rw]mem_max with CAP_NET_ADMIN; otherwise take what the sysctl allows.
    int size = static_cast<int>(socket_buffer);
    if (::setsockopt(fd.fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0)
      ::setsockopt(fd.fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    if (::setsockopt(fd.fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) != 0)
      ::setsockopt(fd.fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
  }
  if (::bind(fd.fd, reinterpret_cast<const sockaddr*>(&bind_addr.ss), bind_addr.len) != 0) {
    int err = errno;
    std::string where = (family_ == AF_INET6 ? "[" + address + "]" : address) + ":" + std::to_string(req_port);
    std::string msg = err == EADDRINUSE
                          ? "cannot bind UDP " + where + ": the port is already in use by another socket; " +
                                "stop the other process or choose another port (port 0 lets the kernel pick one)"
                          : "cannot bind UDP " + where + ": " + SocketAdvice(err);
    ThrowErrno(env, err, "bind", msg);
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (::getsockname(fd.fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    int err = errno;
    ThrowErrno(env, err, "getsockname", "cannot read the bound port: " + SocketAdvice(err));
  }
  if (offload) {
    // Probe: both are per-socket options; where the kernel lacks one we simply don't use it.
    int one = 1, zero = 0;
    gro_ = ::setsockopt(fd.fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    gso_ = ::setsockopt(fd.fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof(zero)) == 0;
  }
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  on_batch_ = Napi::Persistent(info[1].As<Napi::Function>());
  rx_slab_ref_ = Napi::Persistent(info[2]);
  rx_offsets_ref_ = Napi::Persistent(info[3]);
  rx_lengths_ref_ = Napi::Persistent(info[4]);
  rx_addrs_ref_ = Napi::Persistent(info[5]);
  stats_ref_ = Napi::Persistent(info[6]);
  async_ = std::make_unique<Napi::AsyncContext>(env, "EtherLinkUdpSocket", info.This().As<Napi::Object>());

  rx_msgs_.resize(batch_size_);
  rx_iov_.resize(batch_size_);
  rx_names_.resize(batch_size_);
  rx_ctrl_.resize(batch_size_ * kCtrlSize);
  for (size_t i = 0; i < batch_size_; i++) {
    rx_iov_[i].iov_base = rx_slab_ + i * slot_size_;
    rx_iov_[i].iov_len = slot_size_;
    msghdr& h = rx_msgs_[i].msg_hdr;
    std::memset(&h, 0, sizeof(h));
    h.msg_name = &rx_names_[i];
    h.msg_iov = &rx_iov_[i];
    h.msg_iovlen = 1;
  }
  size_t tx_chunk = std::max(batch_size_, kMinTxChunk);
  tx_msgs_.resize(tx_chunk);
  tx_iov_.resize(tx_chunk);
  tx_names_.resize(tx_chunk);
  tx_ctrl_.resize(tx_chunk * kCtrlSize);
  tx_segs_.resize(tx_chunk);
  tx_seg_size_.resize(tx_chunk);
  queue_.resize(send_queue);

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    ThrowErrno(env, EINVAL, "napi_get_uv_event_loop", "cannot reach the Node.js event loop");
  }
  poll_ = static_cast<uv_poll_t*>(std::malloc(sizeof(uv_poll_t)));
  if (poll_ == nullptr) ThrowErrno(env, ENOMEM, "malloc", "out of memory for the UDP socket's poll handle");
  int rc = uv_poll_init(loop, poll_, fd.fd);
  if (rc != 0) {
    std::free(poll_);  // a failed init never registered the handle with the loop
    poll_ = nullptr;
    ThrowErrno(env, -rc, "uv_poll_init", "cannot poll the UDP socket: " + SocketAdvice(-rc));
  }
  poll_->data = this;
  fd_ = fd.Release();

  // An open socket must outlive its last JS reference, like Node's own handles.
  ObjectWrap::Ref();
  self_ref_ = true;
  if (napi_add_env_cleanup_hook(env, OnEnvCleanup, this) == napi_ok) hook_registered_ = true;
  UpdatePoll();
}

UdpSocket::~UdpSocket() {
  CloseHandles();
  if (hook_registered_) {
    napi_remove_env_cleanup_hook(Env(), OnEnvCleanup, this);
    hook_registered_ = false;
  }
}

void UdpSocket::OnEnvCleanup(void* arg) {
  // Process or worker exit: release the fd and handle; JS references die with the env.
  auto* self = static_cast<UdpSocket*>(arg);
  self->hook_registered_ = false;
  self->CloseHandles();
}

void UdpSocket::CloseHandles() {
  if (closed_) return;
  closed_ = true;
  if (poll_ != nullptr) {
    // uv_poll_stop drops the fd from epoll, so closing it now is safe (libuv's
    // own uv_udp closes synchronously too) and the port is free when close() returns.
    uv_poll_stop(poll_);
    poll_->data = nullptr;
    // The close callback is libc's free, not code in this addon: a worker's env
    // unloads the addon before its loop runs the last close callbacks.
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), reinterpret_cast<uv_close_cb>(&::free));
    poll_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (stats_ != nullptr) stats_[kQueueDepth] = 0;
  std::vector<QueuedDatagram>().swap(queue_);
  q_head_ = q_len_ = 0;
}

void UdpSocket::ReleaseJs() {
  release_pending_ = false;
  stats_ = nullptr;
  rx_slab_ = rx_addrs_ = nullptr;
  rx_offsets_ = rx_lengths_ = nullptr;
  async_.reset();
  on_batch_.Reset();
  rx_slab_ref_.Reset();
  rx_offsets_ref_.Reset();
  rx_lengths_ref_.Reset();
  rx_addrs_ref_.Reset();
  stats_ref_.Reset();
  if (self_ref_) {
    self_ref_ = false;
    ObjectWrap::Unref();
  }
}

void UdpSocket::Close(const Napi::CallbackInfo& info) {
  if (closed_ && !self_ref_) return;
  CloseHandles();
  if (hook_registered_) {
    napi_remove_env_cleanup_hook(info.Env(), OnEnvCleanup, this);
    hook_registered_ = false;
  }
  // Inside onBatch the async context and callback are still in use: release after it returns.
  if (in_callback_) {
    release_pending_ = true;
  } else {
    ReleaseJs();
  }
}

void UdpSocket::UpdatePoll() {
  if (closed_ || poll_ == nullptr) return;
  int events = (paused_ ? 0 : UV_READABLE) | (q_len_ > 0 ? UV_WRITABLE : 0);
  if (events == poll_events_) return;
  poll_events_ = events;
  if (events == 0) {
    uv_poll_stop(poll_);
  } else if (uv_poll_start(poll_, events, OnPoll) != 0) {
    poll_events_ = 0;
    stats_[kRxErrors] += 1;
  }
}

void UdpSocket::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<UdpSocket*>(handle->data);
  if (self == nullptr || self->closed_) return;
  if (status < 0) {
    self->stats_[kRxErrors] += 1;
    return;
  }
  if (events & UV_WRITABLE) self->FlushQueue();
  if ((events & UV_READABLE) && !self->closed_ && !self->paused_) self->ReadBatches();
}

void UdpSocket::ReadBatches() {
  Napi::Env env = Env();
  for (int b = 0; b < kMaxBatchesPerWake; b++) {
    for (size_t i = 0; i < batch_size_; i++) {
      rx_msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);  // the kernel shrinks it on each receive
      rx_msgs_[i].msg_hdr.msg_flags = 0;
      if (gro_) {
        rx_msgs_[i].msg_hdr.msg_control = rx_ctrl_.data() + i * kCtrlSize;
        rx_msgs_[i].msg_hdr.msg_controllen = kCtrlSize;
      }
    }
    int n = ::recvmmsg(fd_, rx_msgs_.data(), static_cast<unsigned>(batch_size_), MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) stats_[kRxErrors] += 1;
      return;
    }
    // Compact: truncated datagrams are skipped, the rest keep their slot (no copy).
    uint32_t count = 0;
    double bytes = 0;
    for (int i = 0; i < n; i++) {
      const msghdr& h = rx_msgs_[i].msg_hdr;
      if (h.msg_flags & MSG_TRUNC) {
        stats_[kRxTruncated] += 1;
        continue;
      }
      uint32_t len = rx_msgs_[i].msg_len;
      uint32_t seg = len;
      if (gro_) {
        // UDP_GRO: one message may hold several datagrams of `seg` bytes (the last shorter).
        msghdr& mh = rx_msgs_[i].msg_hdr;
        for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int v;
            std::memcpy(&v, CMSG_DATA(c), sizeof v);
            if (v > 0 && static_cast<uint32_t>(v) < len) seg = static_cast<uint32_t>(v);
          }
        }
        if (seg < len) stats_[kRxGroMessages] += 1;
      }
      // At least one entry: an empty datagram is still a datagram.
      uint32_t at = 0;
      do {
        rx_offsets_[count] = static_cast<uint32_t>(i * slot_size_ + at);
        rx_lengths_[count] = std::min(seg, len - at);
        WriteAddrSlot(rx_addrs_ + count * kAddrSlot, rx_names_[i]);
        count++;
        at += seg;
      } while (at < len && count < rx_capacity_);
      bytes += len;
    }
    stats_[kRxDatagrams] += count;
    stats_[kRxBytes] += bytes;
    if (count > 0) {
      stats_[kRxBatches] += 1;
      Napi::HandleScope scope(env);
      if (!DeliverBatch(count)) return;
    }
    if (closed_ || paused_) return;
    if (static_cast<size_t>(n) < batch_size_) return;  // drained; the next readable event resumes
  }
}

// Returns false when reading must stop (closed inside the callback, or it threw).
bool UdpSocket::DeliverBatch(uint32_t count) {
  Napi::Env env = Env();
  // A local handle to our own wrapper keeps it alive even if JS closes and drops it mid-callback.
  Napi::Object self = Value();
  napi_value fn = on_batch_.Value();
  napi_value arg = Napi::Number::New(env, count);
  napi_value result;
  in_callback_ = true;
  napi_status status = napi_make_callback(env, *async_, self, fn, 1, &arg, &result);
  in_callback_ = false;
  bool ok = true;
  if (status != napi_ok) {
    // Nobody above us can catch it: report like any other uncaught exception.
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok && exc != nullptr) {
      napi_fatal_exception(env, exc);
    }
    ok = false;
  }
  if (release_pending_) ReleaseJs();
  return ok && !closed_;
}

socklen_t UdpSocket::ToSockaddr(const uint8_t* slot, sockaddr_storage* ss) const {
  uint16_t port_be;
  std::memcpy(&port_be, slot + kAddrPortOffset, 2);
  if (family_ == AF_INET6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = port_be;
    s6->sin6_flowinfo = 0;
    std::memcpy(&s6->sin6_addr, slot, 16);
    s6->sin6_scope_id = IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr) ? scope_id_ : 0;
    return sizeof(sockaddr_in6);
  }
  if (std::memcmp(slot, kV4MappedPrefix, 12) != 0) return 0;  // IPv6 peer, IPv4 socket
  auto* s4 = reinterpret_cast<sockaddr_in*>(ss);
  s4->sin_family = AF_INET;
  s4->sin_port = port_be;
  std::memcpy(&s4->sin_addr, slot + 12, 4);
  std::memset(s4->sin_zero, 0, sizeof(s4->sin_zero));
  return sizeof(sockaddr_in);
}

uint32_t UdpSocket::Enqueue(const uint8_t* data, size_t len, const sockaddr_storage& name, socklen_t name_len) {
  if (q_len_ >= queue_.size()) {
    stats_[kTxDropped] += 1;  // like a switch: a full egress queue drops
    return 0;
  }
  QueuedDatagram& q = queue_[(q_head_ + q_len_) % queue_.size()];
  q.data.assign(data, data + len);
  std::memcpy(&q.name, &name, name_len);
  q.name_len = name_len;
  q_len_++;
  stats_[kTxQueued] += 1;
  stats_[kQueueDepth] = static_cast<double>(q_len_);
  return 1;
}

Napi::Value UdpSocket::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireArgs(info, 5, "send(buf, offsets, lengths, addrs, count)");
  Span<uint8_t> buf_arg = BytesArg(info[0], "buf");
  Span<uint32_t> offsets_arg = Uint32ArrayArg(info[1], "offsets");
  Span<uint32_t> lengths_arg = Uint32ArrayArg(info[2], "lengths");
  Span<uint8_t> addrs_arg = BytesArg(info[3], "addrs");
  size_t count = CountArg(info[4], {{"offsets", offsets_arg.length},
                                    {"lengths", lengths_arg.length},
                                    {"addrs (in address slots)", addrs_arg.length / kAddrSlot}});
  const uint8_t* buf = buf_arg.data;
  size_t buf_len = buf_arg.length;
  const uint32_t* offsets = offsets_arg.data;
  const uint32_t* lengths = lengths_arg.data;
  const uint8_t* addrs = addrs_arg.data;
  for (size_t i = 0; i < count; i++) {
    if (static_cast<uint64_t>(offsets[i]) + lengths[i] > buf_len) {
      ThrowCode(env, kErrOutOfRange, "send: datagram " + std::to_string(i) + " lies outside buf");
    }
  }
  if (closed_) return Napi::Number::New(env, 0);

  uint32_t accepted = 0;
  size_t i = 0;
  sockaddr_storage name;
  // Once anything waits, later datagrams queue behind it to keep order.
  if (q_len_ > 0) {
    for (; i < count; i++) {
      socklen_t len = ToSockaddr(addrs + i * kAddrSlot, &name);
      if (len == 0) {
        stats_[kTxErrors] += 1;
        continue;
      }
      accepted += Enqueue(buf + offsets[i], lengths[i], name, len);
    }
    return Napi::Number::New(env, accepted);
  }

  const size_t chunk = tx_msgs_.size();
  while (i < count) {
    size_t n = 0;
    for (; n < chunk && i < count; i++) {
      socklen_t len = ToSockaddr(addrs + i * kAddrSlot, &tx_names_[n]);
      if (len == 0) {
        stats_[kTxErrors] += 1;
        continue;
      }
      // UDP GSO: following datagrams that are contiguous in buf, go to the same
      // address and have the same size (the last may be shorter) ride in this message.
      size_t segs = 1;
      size_t total = lengths[i];
      if (gso_) {
        while (i + segs < count && segs < kMaxGsoSegments) {
          size_t k = i + segs;
          if (offsets[k] != offsets[k - 1] + lengths[k - 1] || lengths[k] > lengths[i] || lengths[k - 1] != lengths[i] ||
              total + lengths[k] > kMaxGsoBytes || std::memcmp(addrs + k * kAddrSlot, addrs + i * kAddrSlot, kAddrSlot) != 0)
            break;
          total += lengths[k];
          segs++;
        }
      }
      tx_iov_[n].iov_base = const_cast<uint8_t*>(buf + offsets[i]);
      tx_iov_[n].iov_len = total;
      msghdr& h = tx_msgs_[n].msg_hdr;
      h.msg_name = &tx_names_[n];
      h.msg_namelen = len;
      h.msg_iov = &tx_iov_[n];
      h.msg_iovlen = 1;
      h.msg_control = nullptr;
      h.msg_controllen = 0;
      h.msg_flags = 0;
      tx_segs_[n] = static_cast<uint32_t>(segs);
      tx_seg_size_[n] = lengths[i];
      if (segs > 1) {
        uint8_t* ctrl = tx_ctrl_.data() + n * kCtrlSize;
        std::memset(ctrl, 0, kCtrlSize);
        h.msg_control = ctrl;
        h.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        cmsghdr* c = CMSG_FIRSTHDR(&h);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t gs = static_cast<uint16_t>(lengths[i]);
        std::memcpy(CMSG_DATA(c), &gs, sizeof gs);
      }
      i += segs - 1;
      n++;
    }
    size_t done = 0;
    while (done < n) {
      int r = ::sendmmsg(fd_, tx_msgs_.data() + done, static_cast<unsigned>(n - done), MSG_DONTWAIT);
      if (r > 0) {
        for (size_t k = done; k < done + r; k++) {
          stats_[kTxBytes] += tx_msgs_[k].msg_len;
          stats_[kTxDatagrams] += tx_segs_[k];
          accepted += tx_segs_[k];
          if (tx_segs_[k] > 1) stats_[kTxGsoSends] += 1;
        }
        done += r;
        continue;  // a short count means message `done` failed: the retry reports its errno
      }
      int err = r == 0 ? EAGAIN : errno;
      if (err == EINTR) continue;
      if ((err == EIO || err == EINVAL) && tx_segs_[done] > 1) {
        // The path can't segment (no checksum offload on the device): send the segments one by one from now on.
        gso_ = false;
        const msghdr& h = tx_msgs_[done].msg_hdr;
        const uint8_t* base = static_cast<const uint8_t*>(h.msg_iov->iov_base);
        for (size_t at = 0; at < h.msg_iov->iov_len; at += tx_seg_size_[done]) {
          size_t seg = std::min<size_t>(tx_seg_size_[done], h.msg_iov->iov_len - at);
          ssize_t w = ::sendto(fd_, base + at, seg, MSG_DONTWAIT, static_cast<const sockaddr*>(h.msg_name), h.msg_namelen);
          if (w < 0) {
            stats_[kTxErrors] += 1;
          } else {
            stats_[kTxDatagrams] += 1;
            stats_[kTxBytes] += static_cast<double>(w);
            accepted++;
          }
        }
        done++;
        continue;
      }
      if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
        for (size_t k = done; k < n; k++) {
          const msghdr& h = tx_msgs_[k].msg_hdr;
          const uint8_t* base = static_cast<const uint8_t*>(h.msg_iov->iov_base);
          for (size_t at = 0; at < h.msg_iov->iov_len; at += tx_seg_size_[k]) {
            size_t seg = std::min<size_t>(tx_seg_size_[k], h.msg_iov->iov_len - at);
            accepted += Enqueue(base + at, seg, tx_names_[k], h.msg_namelen);
          }
        }
        for (; i < count; i++) {
          socklen_t len = ToSockaddr(addrs + i * kAddrSlot, &name);
          if (len == 0) {
            stats_[kTxErrors] += 1;
            continue;
          }
          accepted += Enqueue(buf + offsets[i], lengths[i], name, len);
        }
        UpdatePoll();
        return Napi::Number::New(env, accepted);
      }
      // ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EPERM (firewall), EMSGSIZE...: this message is lost.
      stats_[kTxErrors] += tx_segs_[done];
      done++;
    }
  }
  return Napi::Number::New(env, accepted);
}

void UdpSocket::FlushQueue() {
  const size_t chunk = tx_msgs_.size();
  const size_t cap = queue_.size();
  while (q_len_ > 0) {
    size_t n = std::min(q_len_, chunk);
    for (size_t k = 0; k < n; k++) {
      QueuedDatagram& q = queue_[(q_head_ + k) % cap];
      tx_iov_[k].iov_base = q.data.data();
      tx_iov_[k].iov_len = q.data.size();
      msghdr& h = tx_msgs_[k].msg_hdr;
      h.msg_name = &q.name;
      h.msg_namelen = q.name_len;
      h.msg_iov = &tx_iov_[k];
      h.msg_iovlen = 1;
      h.msg_control = nullptr;
      h.msg_controllen = 0;
      h.msg_flags = 0;
    }
    int r = ::sendmmsg(fd_, tx_msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT);
    size_t pop = 0;
    if (r > 0) {
      for (int k = 0; k < r; k++) stats_[kTxBytes] += tx_msgs_[k].msg_len;
      stats_[kTxDatagrams] += r;
      pop = r;
    } else {
      int err = r == 0 ? EAGAIN : errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) break;  // wait for the next UV_WRITABLE
      stats_[kTxErrors] += 1;
      pop = 1;
    }
    q_head_ = (q_head_ + pop) % cap;
    q_len_ -= pop;
  }
  stats_[kQueueDepth] = static_cast<double>(q_len_);
  UpdatePoll();
}

}  // namespace

Napi::Object InitUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("UdpSocket", UdpSocket::Define(env));
  return exports;
}

}  // namespace etherlink
