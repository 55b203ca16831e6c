// UDP underlay socket: bind, then batched recvmmsg/sendmmsg polled on Node's
// own loop, moving datagrams between the kernel and JS-owned slabs (lib/io/udp.ts);
// on a switch it also relays pair data between members without JS.
#include <napi.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "polled_handle.h"
#include "relay_table.h"
#include "send_queue.h"
#include "udp_address.h"
#include "udp_gso_linux.h"

#ifndef UDP_NO_CHECK6_RX
#define UDP_NO_CHECK6_RX 102  // linux/udp.h, since Linux 3.16
#endif

namespace etherlink {
namespace {

// Indices into the JS Float64Array of counters; mirrors UdpStat in lib/io/native.ts.
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
  kTxGsoSends = 11,      // sendmmsg messages that carried several datagrams (UDP_SEGMENT)
  kRxGroMessages = 12,   // received messages that held several datagrams (UDP_GRO)
  kRelayDatagrams = 13,  // pair data forwarded by the relay table (also in rx and tx)
  kRelayBytes = 14,
  kUdpStatCount = 15,
};

constexpr uint32_t kMaxPort = 65535;
// The kernel caps recvmmsg/sendmmsg vectors at UIO_MAXIOV (1024).
constexpr uint32_t kMaxBatchSize = 1024;
// Larger than any UDP payload (65535 - headers); offsets stay well within uint32.
constexpr uint32_t kMaxSlotSize = 1 << 18;
// sendmmsg scratch arrays hold at least this many datagrams per syscall.
constexpr size_t kMinTxChunk = 64;

inline bool WouldBlock(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS; }

// Where one datagram goes; rides along in the send queue.
struct Destination {
  sockaddr_storage name;
  socklen_t len = 0;
};

class UdpSocket : public PolledHandle<UdpSocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefinePolledClass(env, "UdpSocket",
                             {
                                 InstanceAccessor<&UdpSocket::GetPort>("port"),
                                 InstanceAccessor<&UdpSocket::GetFamily>("family"),
                                 InstanceAccessor<&UdpSocket::GetOffloads>("offloads"),
                                 InstanceMethod<&UdpSocket::Send>("send"),
                                 InstanceMethod<&UdpSocket::SetRelayRoute>("setRelayRoute"),
                                 InstanceMethod<&UdpSocket::SetRelayCounters>("setRelayCounters"),
                                 InstanceMethod<&UdpSocket::SteerPairData>("steerPairData"),
                             });
  }

  explicit UdpSocket(const Napi::CallbackInfo& info);

 private:
  friend class PolledHandle<UdpSocket>;

  Napi::Value GetPort(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }
  Napi::Value GetOffloads(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), offloads_.Name()); }
  Napi::Value GetFamily(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), family_ == AF_INET6 ? 6 : 4);
  }
  Napi::Value Send(const Napi::CallbackInfo& info);
  void SetRelayRoute(const Napi::CallbackInfo& info);
  void SetRelayCounters(const Napi::CallbackInfo& info);
  void SteerPairData(const Napi::CallbackInfo& info);

  void OnReadable();
  void OnWritable();
  void OnClosed();
  uint32_t SendSlots(const uint8_t* buf, const uint32_t* offsets, const uint32_t* lengths, const uint8_t* addrs,
                     size_t count);
  uint32_t RelayPairData(uint32_t count);
  // `index` is a datagram counter of RelayCounterIndex; its bytes follow it.
  void CountRelay(uint16_t id, size_t index, uint32_t len) {
    if (id >= relay_counter_members_) return;  // relayed all the same, just not counted
    double* c = relay_counters_ + id * kRelayCountersPerMember;
    c[index] += 1;
    c[index + 1] += len;
  }
  uint32_t Enqueue(const uint8_t* data, size_t len, const Destination& dest) { return queue_.Push(data, len, dest) ? 1 : 0; }
  uint32_t EnqueueSlots(const uint8_t* buf, const uint32_t* offsets, const uint32_t* lengths, const uint8_t* addrs,
                        size_t from, size_t count);
  uint32_t SendSegmentsSeparately(const msghdr& h, size_t segment);

  int family_ = AF_INET6;
  uint16_t port_ = 0;
  uint32_t scope_id_ = 0;  // applied to link-local destinations; the 20-byte slot has no room for a zone
  UdpOffloads offloads_;

  // JS-owned memory, pinned for as long as the socket is open.
  uint8_t* rx_slab_ = nullptr;
  uint32_t* rx_offsets_ = nullptr;
  uint32_t* rx_lengths_ = nullptr;
  uint8_t* rx_addrs_ = nullptr;
  double* stats_ = nullptr;
  size_t batch_size_ = 0;
  size_t slot_size_ = 0;
  size_t rx_capacity_ = 0;

  // Kernel-facing scratch, sized once at construction.
  std::vector<mmsghdr> rx_msgs_;
  std::vector<iovec> rx_iov_;
  std::vector<sockaddr_storage> rx_names_;
  std::vector<uint8_t> rx_ctrl_;
  std::vector<mmsghdr> tx_msgs_;
  std::vector<iovec> tx_iov_;
  std::vector<Destination> tx_dest_;
  std::vector<uint8_t> tx_ctrl_;
  std::vector<uint32_t> tx_segs_, tx_seg_size_;

  SendQueue<Destination> queue_;

  // Relay (a switch's socket only; empty until the first route).
  RelayTable relay_;
  std::vector<uint32_t> relay_offsets_, relay_lengths_;  // the datagrams of one receive batch to forward
  std::vector<uint8_t> relay_addrs_;                      // and their destinations, kAddrSlot each
  double* relay_counters_ = nullptr;
  size_t relay_counter_members_ = 0;  // ids below this are counted
  // Replaced, not accumulated, when JS hands over a larger array.
  Napi::Reference<Napi::Value> relay_counters_pin_;
};

// UdpSocket(opts, onBatch, rxSlab, rxOffsets, rxLengths, rxAddrs, stats)
UdpSocket::UdpSocket(const Napi::CallbackInfo& info) : PolledHandle<UdpSocket>(info) {
  Napi::Env env = info.Env();
  RequireArgs(info, 7, "UdpSocket(opts, onBatch, rxSlab, rxOffsets, rxLengths, rxAddrs, stats)");
  if (!info[0].IsObject()) ThrowCode(env, kErrInvalidArgType, "UdpSocket: opts must be an object");
  if (!info[1].IsFunction()) ThrowCode(env, kErrInvalidArgType, "UdpSocket: onBatch must be a function");
  Napi::Object opts = info[0].As<Napi::Object>();
  Napi::Value addr_v = opts.Get("address");
  if (!addr_v.IsString()) ThrowCode(env, kErrInvalidArgType, "options.address must be a string");
  std::string address = addr_v.As<Napi::String>().Utf8Value();
  uint16_t req_port = static_cast<uint16_t>(U32Option(opts, "port", 0, kMaxPort));
  batch_size_ = U32Option(opts, "batchSize", 1, kMaxBatchSize);
  slot_size_ = U32Option(opts, "slotSize", 1, kMaxSlotSize);
  size_t send_queue = U32Option(opts, "sendQueue", 0, kMaxQueueFrames);
  uint32_t socket_buffer = U32Option(opts, "socketBuffer", 0, INT32_MAX);
  bool offload = BoolOption(opts, "offload");
  bool zero_csum4 = BoolOption(opts, "zeroChecksumV4");
  bool zero_csum6_rx = BoolOption(opts, "zeroChecksumV6Rx");
  // SO_REUSEPORT: relay workers bind the same port. `exclusive` first checks, without it, that nobody holds the port.
  bool reuse_port = BoolOption(opts, "reusePort");
  bool exclusive = BoolOption(opts, "exclusive");
  if (offload && zero_csum4) ThrowCode(env, kErrInvalidArgValue, "zeroChecksumV4 and offload cannot go together: UDP GSO needs checksums");

  Span<uint8_t> slab = BytesArg(info[2], "rxSlab");
  Span<uint32_t> offsets = Uint32ArrayArg(info[3], "rxOffsets");
  Span<uint32_t> lengths = Uint32ArrayArg(info[4], "rxLengths");
  Span<uint8_t> addrs = BytesArg(info[5], "rxAddrs");
  Span<double> stats = Float64ArrayArg(info[6], "stats");
  rx_capacity_ = offload ? batch_size_ * kMaxGroSegments : batch_size_;
  if (slab.length < batch_size_ * slot_size_ || offsets.length < rx_capacity_ || lengths.length < rx_capacity_ ||
      addrs.length < rx_capacity_ * kAddrSlot || stats.length < kUdpStatCount) {
    ThrowCode(env, kErrOutOfRange,
              "receive slabs are smaller than batchSize x slotSize / batchSize x ADDR_SLOT (see lib/io/udp.ts)");
  }
  rx_slab_ = slab.data;
  rx_offsets_ = offsets.data;
  rx_lengths_ = lengths.data;
  rx_addrs_ = addrs.data;
  stats_ = stats.data;

  BindAddress bind_addr;
  if (!ParseBindAddress(address, req_port, &bind_addr)) {
    ThrowCode(env, kErrInvalidAddress,
              "invalid bind address '" + address + "': use an IPv4 or IPv6 literal such as '::', '0.0.0.0' or '::1'");
  }

  UniqueFd fd(::socket(bind_addr.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
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
  if (reuse_port && exclusive && req_port != 0) {
    // A group open to anyone of our UID would let a second switch on this port bind silently and take a share of
    // the traffic: the port must be free before the group forms (EADDRINUSE as without workers).
    UniqueFd probe(::socket(bind_addr.family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (probe.fd >= 0) {
      if (bind_addr.any6) {
        int off = 0;
        ::setsockopt(probe.fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
      }
      if (::bind(probe.fd, reinterpret_cast<const sockaddr*>(&bind_addr.ss), bind_addr.len) != 0 && errno == EADDRINUSE) {
        std::string where = (bind_addr.family == AF_INET6 ? "[" + address + "]" : address) + ":" + std::to_string(req_port);
        ThrowErrno(env, EADDRINUSE, "bind",
                   "cannot bind UDP " + where + ": the port is already in use by another socket; stop the other process or choose another port");
      }
    }
  }
  if (reuse_port) {
    int on = 1;
    if (::setsockopt(fd.fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) {
      int err = errno;
      ThrowErrno(env, err, "setsockopt", "cannot share the UDP port with relay workers (SO_REUSEPORT): " + SocketAdvice(err));
    }
  }
  if (zero_csum4) {
    // RFC 7348 5: the UDP checksum SHOULD be zero over IPv4 (the kernel vxlan default, noudpcsum). IPv6 ignores this.
    int on = 1;
    if (::setsockopt(fd.fd, SOL_SOCKET, SO_NO_CHECK, &on, sizeof(on)) != 0) {
      int err = errno;
      ThrowErrno(env, err, "setsockopt", "cannot turn off UDP checksums (SO_NO_CHECK): " + SocketAdvice(err));
    }
  }
  if (zero_csum6_rx && family_ == AF_INET6) {
    // RFC 7348 5: a zero UDP checksum MUST be accepted; over IPv6 the kernel drops it unless told (RFC 6935/6936,
    // the kernel vxlan's udp6zerocsumrx). An IPv4 socket accepts zero checksums already.
    int on = 1;
    if (::setsockopt(fd.fd, IPPROTO_UDP, UDP_NO_CHECK6_RX, &on, sizeof(on)) != 0) {
      int err = errno;
      ThrowErrno(env, err, "setsockopt", "cannot accept zero UDP checksums over IPv6 (UDP_NO_CHECK6_RX): " + SocketAdvice(err));
    }
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
  if (offload) offloads_ = ProbeUdpOffloads(fd.fd);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

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
  tx_dest_.resize(tx_chunk);
  tx_ctrl_.resize(tx_chunk * kCtrlSize);
  tx_segs_.resize(tx_chunk);
  tx_seg_size_.resize(tx_chunk);
  queue_.Init(send_queue, stats_, {kTxDropped, kTxQueued, kQueueDepth});

  for (size_t i = 2; i <= 6; i++) Pin(info[i]);
  poller().set_error_counter(&stats_[kRxErrors]);
  // An open socket outlives its last JS reference, like Node's own handles.
  StartPolling(env, fd.Release(), info[1].As<Napi::Function>(), "etherlink:UdpSocket");
}

void UdpSocket::OnReadable() {
  const int fd = this->fd();
  for (int b = 0; b < kMaxBatchesPerWake; b++) {
    for (size_t i = 0; i < batch_size_; i++) {
      rx_msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);  // the kernel shrinks it on each receive
      rx_msgs_[i].msg_hdr.msg_flags = 0;
      if (offloads_.gro) {
        rx_msgs_[i].msg_hdr.msg_control = rx_ctrl_.data() + i * kCtrlSize;
        rx_msgs_[i].msg_hdr.msg_controllen = kCtrlSize;
      }
    }
    int n = ::recvmmsg(fd, rx_msgs_.data(), static_cast<unsigned>(batch_size_), MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) stats_[kRxErrors] += 1;
      return;
    }
    // Compact: truncated datagrams are skipped, the rest keep their slot (no copy).
    uint32_t count = 0;
    double bytes = 0;
    for (int i = 0; i < n; i++) {
      msghdr& h = rx_msgs_[i].msg_hdr;
      if (h.msg_flags & MSG_TRUNC) {
        stats_[kRxTruncated] += 1;
        continue;
      }
      uint32_t len = rx_msgs_[i].msg_len;
      uint32_t seg = len;
      if (offloads_.gro) {
        // UDP_GRO: one message may hold several datagrams of `seg` bytes (the last shorter).
        seg = GroSegmentSize(&h, len);
        if (seg < len) stats_[kRxGroMessages] += 1;
      }
      const sockaddr_storage& from = rx_names_[i];
      count += SplitGro(static_cast<uint32_t>(i * slot_size_), len, seg, static_cast<uint32_t>(rx_capacity_ - count),
                        [&, k = count](uint32_t offset, uint32_t length) mutable {
                          rx_offsets_[k] = offset;
                          rx_lengths_[k] = length;
                          WriteAddrSlot(rx_addrs_ + k * kAddrSlot, from);
                          k++;
                        });
      bytes += len;
    }
    stats_[kRxDatagrams] += count;
    stats_[kRxBytes] += bytes;
    // Forwarded before JS runs: the next recvmmsg reuses the slab they live in.
    if (count > 0 && !relay_.empty()) count = RelayPairData(count);
    if (count > 0) {
      stats_[kRxBatches] += 1;
      if (!Deliver(count)) return;
    }
    if (closed() || paused()) return;
    if (static_cast<size_t>(n) < batch_size_) return;  // drained; the next readable event resumes
  }
}

// Queue datagrams [from, count) behind what waits, keeping their order.
uint32_t UdpSocket::EnqueueSlots(const uint8_t* buf, const uint32_t* offsets, const uint32_t* lengths,
                                 const uint8_t* addrs, size_t from, size_t count) {
  uint32_t accepted = 0;
  Destination dest;
  for (size_t i = from; i < count; i++) {
    dest.len = SlotToSockaddr(addrs + i * kAddrSlot, family_, scope_id_, &dest.name);
    if (dest.len == 0) {
      stats_[kTxErrors] += 1;
      continue;
    }
    accepted += Enqueue(buf + offsets[i], lengths[i], dest);
  }
  return accepted;
}

// The path can't segment (no checksum offload on the device): send this GSO
// message's datagrams one by one.
uint32_t UdpSocket::SendSegmentsSeparately(const msghdr& h, size_t segment) {
  uint32_t sent = 0;
  const int fd = this->fd();
  ForEachSegment(h, segment, [&](const uint8_t* data, size_t len) {
    ssize_t w = ::sendto(fd, data, len, MSG_DONTWAIT, static_cast<const sockaddr*>(h.msg_name), h.msg_namelen);
    if (w < 0) {
      stats_[kTxErrors] += 1;
    } else {
      stats_[kTxDatagrams] += 1;
      stats_[kTxBytes] += static_cast<double>(w);
      sent++;
    }
  });
  return sent;
}

// send(buf, offsets, lengths, addrs, count) -> datagrams sent or queued.
Napi::Value UdpSocket::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireArgs(info, 5, "send(buf, offsets, lengths, addrs, count)");
  Span<uint8_t> buf = BytesArg(info[0], "buf");
  Span<uint32_t> offsets_arg = Uint32ArrayArg(info[1], "offsets");
  Span<uint32_t> lengths_arg = Uint32ArrayArg(info[2], "lengths");
  Span<uint8_t> addrs_arg = BytesArg(info[3], "addrs");
  size_t count = CountArg(info[4], {{"offsets", offsets_arg.length},
                                    {"lengths", lengths_arg.length},
                                    {"addrs (in address slots)", addrs_arg.length / kAddrSlot}});
  const uint32_t* offsets = offsets_arg.data;
  const uint32_t* lengths = lengths_arg.data;
  const uint8_t* addrs = addrs_arg.data;
  for (size_t i = 0; i < count; i++) {
    if (static_cast<uint64_t>(offsets[i]) + lengths[i] > buf.length) {
      ThrowCode(env, kErrOutOfRange, "send: datagram " + std::to_string(i) + " lies outside buf");
    }
  }
  if (closed()) return Napi::Number::New(env, 0);
  return Napi::Number::New(env, SendSlots(buf.data, offsets, lengths, addrs, count));
}

// Datagram i = buf[offsets[i]..+lengths[i]] to the slot addrs[i * kAddrSlot..], for
// i < count, already checked to lie in buf: runs of them as GSO messages, through
// sendmmsg, queueing what meets EAGAIN. Returns how many were sent or queued.
uint32_t UdpSocket::SendSlots(const uint8_t* buf, const uint32_t* offsets, const uint32_t* lengths,
                              const uint8_t* addrs, size_t count) {
  // Once anything waits, later datagrams queue behind it to keep order.
  if (!queue_.empty()) return EnqueueSlots(buf, offsets, lengths, addrs, 0, count);

  const int fd = this->fd();
  uint32_t accepted = 0;
  size_t i = 0;
  const size_t chunk = tx_msgs_.size();
  while (i < count) {
    size_t n = 0;
    for (; n < chunk && i < count; i++) {
      Destination& dest = tx_dest_[n];
      dest.len = SlotToSockaddr(addrs + i * kAddrSlot, family_, scope_id_, &dest.name);
      if (dest.len == 0) {
        stats_[kTxErrors] += 1;
        continue;
      }
      size_t total = lengths[i];
      size_t segs = offloads_.gso ? GsoRunLength(offsets, lengths, addrs, i, count, &total) : 1;
      tx_iov_[n].iov_base = const_cast<uint8_t*>(buf + offsets[i]);
      tx_iov_[n].iov_len = total;
      msghdr& h = tx_msgs_[n].msg_hdr;
      h.msg_name = &dest.name;
      h.msg_namelen = dest.len;
      h.msg_iov = &tx_iov_[n];
      h.msg_iovlen = 1;
      h.msg_control = nullptr;
      h.msg_controllen = 0;
      h.msg_flags = 0;
      tx_segs_[n] = static_cast<uint32_t>(segs);
      tx_seg_size_[n] = lengths[i];
      if (segs > 1) AttachGsoSegment(&h, tx_ctrl_.data() + n * kCtrlSize, static_cast<uint16_t>(lengths[i]));
      i += segs - 1;
      n++;
    }
    size_t done = 0;
    while (done < n) {
      int r = ::sendmmsg(fd, tx_msgs_.data() + done, static_cast<unsigned>(n - done), MSG_DONTWAIT);
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
        // From now on the segments go one by one.
        offloads_.gso = false;
        accepted += SendSegmentsSeparately(tx_msgs_[done].msg_hdr, tx_seg_size_[done]);
        done++;
        continue;
      }
      if (WouldBlock(err)) {
        for (size_t k = done; k < n; k++) {
          ForEachSegment(tx_msgs_[k].msg_hdr, tx_seg_size_[k],
                         [&](const uint8_t* data, size_t len) { accepted += Enqueue(data, len, tx_dest_[k]); });
        }
        accepted += EnqueueSlots(buf, offsets, lengths, addrs, i, count);
        WantWritable(!queue_.empty());
        return accepted;
      }
      // ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EPERM (firewall), EMSGSIZE...: this message is lost.
      stats_[kTxErrors] += tx_segs_[done];
      done++;
    }
  }
  return accepted;
}

// Entries [0, count) of the receive arrays: forward the pair data the relay
// table routes from a known member to another, and compact the rest in place
// (order kept) for JS, which answers and counts what the table can't route.
// Returns how many are left for JS.
uint32_t UdpSocket::RelayPairData(uint32_t count) {
  size_t relayed = 0;
  uint32_t kept = 0;
  double bytes = 0;
  // GRO segments of one message, and a member's bulk traffic, share a source:
  // one hash lookup per run of them.
  EndpointKey last_from{};
  uint16_t last_src = 0;
  bool have_last = false;
  for (uint32_t k = 0; k < count; k++) {
    const uint8_t* from = rx_addrs_ + k * kAddrSlot;
    const uint8_t* d = rx_slab_ + rx_offsets_[k];
    const uint32_t len = rx_lengths_[k];
    const uint8_t* route = nullptr;
    uint16_t dst = 0;
    uint16_t src = 0;
    if (len >= kPairDataMinSize && d[0] == kRelayProtocolVersion && d[1] == kPairDataType) {
      dst = static_cast<uint16_t>(d[kPairDataDestOffset] << 8 | d[kPairDataDestOffset + 1]);
      route = relay_.RouteOf(dst);
      if (route != nullptr) {
        if (!have_last || !last_from.Matches(from)) {
          last_from = EndpointKey::FromSlot(from);
          last_src = relay_.SourceOf(last_from);
          have_last = true;
        }
        src = last_src;
      }
    }
    // Another network's member (or an unrouted one) is for JS, which drops and counts it.
    if (route == nullptr || src == 0 || src == dst || !relay_.SameGroup(src, dst)) {
      if (kept != k) {
        rx_offsets_[kept] = rx_offsets_[k];
        rx_lengths_[kept] = len;
        std::memcpy(rx_addrs_ + kept * kAddrSlot, from, kAddrSlot);
      }
      kept++;
      continue;
    }
    // GRO segments stay contiguous and equal-sized here, so SendSlots sends them as one GSO message.
    relay_offsets_[relayed] = rx_offsets_[k];
    relay_lengths_[relayed] = len;
    std::memcpy(relay_addrs_.data() + relayed * kAddrSlot, route, kAddrSlot);
    relayed++;
    bytes += len;
    CountRelay(dst, kRelayToDatagrams, len);
    CountRelay(src, kRelayFromDatagrams, len);
  }
  if (relayed > 0) {
    stats_[kRelayDatagrams] += static_cast<double>(relayed);
    stats_[kRelayBytes] += bytes;
    SendSlots(rx_slab_, relay_offsets_.data(), relay_lengths_.data(), relay_addrs_.data(), relayed);
  }
  return kept;
}

// setRelayRoute(id, addr | null[, group]): member `id` lives at, and only sends
// from, the address slot `addr`, and is relayed only to and from members of the
// same group (0..65535, default 0: its network); null forgets it.
void UdpSocket::SetRelayRoute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireArgs(info, 2, "setRelayRoute(id, addr)");
  if (!info[0].IsNumber()) ThrowCode(env, kErrInvalidArgType, "setRelayRoute: id must be a number");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= kMaxMemberId) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    ThrowCode(env, kErrOutOfRange,
              "setRelayRoute: id must be an integer member id in [1, " + std::to_string(kMaxMemberId) +
                  "] (0 is never a member), got " + info[0].ToString().Utf8Value());
  }
  const uint16_t id = static_cast<uint16_t>(d);
  uint16_t group = 0;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    double g = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
    if (!(g >= 0 && g <= 65535) || g != static_cast<double>(static_cast<uint32_t>(g))) {
      ThrowCode(env, kErrOutOfRange, "setRelayRoute: group must be an integer in [0, 65535], got " + info[2].ToString().Utf8Value());
    }
    group = static_cast<uint16_t>(g);
  }
  if (info[1].IsNull() || info[1].IsUndefined()) {
    relay_.Remove(id);
    return;
  }
  Span<uint8_t> addr = BytesArg(info[1], "addr");
  if (addr.length != kAddrSlot) {
    ThrowCode(env, kErrOutOfRange,
              "setRelayRoute: addr must be one address slot of " + std::to_string(kAddrSlot) + " bytes (ADDR_SLOT), got " +
                  std::to_string(addr.length));
  }
  sockaddr_storage probe;
  if (SlotToSockaddr(addr.data, family_, scope_id_, &probe) == 0) {
    ThrowCode(env, kErrInvalidAddress,
              "setRelayRoute: member " + std::to_string(id) +
                  " has an IPv6 address, which this IPv4 socket cannot reach: bind the switch to '::'");
  }
  if (closed()) return;
  if (relay_offsets_.empty()) {
    // Once per socket: forwarding a receive batch never allocates.
    relay_offsets_.resize(rx_capacity_);
    relay_lengths_.resize(rx_capacity_);
    relay_addrs_.resize(rx_capacity_ * kAddrSlot);
  }
  relay_.Set(id, addr.data, group);
}

// setRelayCounters(counters): kRelayCountersPerMember doubles per member id,
// written on every relayed datagram; ids beyond the array are relayed uncounted.
void UdpSocket::SetRelayCounters(const Napi::CallbackInfo& info) {
  RequireArgs(info, 1, "setRelayCounters(counters)");
  Span<double> counters = Float64ArrayArg(info[0], "counters");
  if (closed()) return;
  relay_counters_pin_ = Napi::Persistent(info[0]);
  relay_counters_ = counters.data;
  relay_counter_members_ = counters.length / kRelayCountersPerMember;
}

// steerPairData(workers): a classic BPF program for the port's SO_REUSEPORT group.
// Pair data (version kRelayProtocolVersion, type kPairDataType, at least
// kPairDataMinSize bytes) goes to socket 1 + (destination id mod workers),
// so all of one destination's traffic is relayed, in order, by one worker; every
// other datagram (handshakes, hop-by-hop data, control), and anything too short
// to read, goes to socket 0, this one. The kernel runs it with the data at the UDP
// payload (net/core/sock_reuseport.c, run_bpf_filter). 0 workers detaches it.
void UdpSocket::SteerPairData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireArgs(info, 1, "steerPairData(workers)");
  uint32_t workers = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
  if (workers > 1024) ThrowCode(env, kErrOutOfRange, "steerPairData: at most 1024 workers");
  if (closed()) return;
  if (workers == 0) {
    int unused = 0;
    ::setsockopt(fd(), SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused, sizeof(unused));
    return;
  }
  // Only what can be pair data is steered (length, version, type, as RelayPairData checks them), so junk with
  // the type byte alone lands on the main thread's socket, not in a worker's queue to the main thread.
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),                                 // A = UDP payload length
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, kPairDataMinSize, 1, 0),           // long enough?
      BPF_STMT(BPF_RET | BPF_K, 0),                                          // no: the main thread's socket
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),                                 // A = protocol version
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kRelayProtocolVersion, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, 0),
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 1),                                 // A = type
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kPairDataType, 1, 0),              // pair data?
      BPF_STMT(BPF_RET | BPF_K, 0),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, kPairDataDestOffset),               // A = destination member id
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, workers),
      BPF_STMT(BPF_ALU | BPF_ADD | BPF_K, 1),
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof(code) / sizeof(code[0])), code};
  if (::setsockopt(fd(), SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0) {
    int err = errno;
    ThrowErrno(env, err, "setsockopt", "cannot steer pair data to relay workers (SO_ATTACH_REUSEPORT_CBPF): " + SocketAdvice(err));
  }
}

void UdpSocket::OnClosed() {
  queue_.Release();
  relay_.Release();
  std::vector<uint32_t>().swap(relay_offsets_);
  std::vector<uint32_t>().swap(relay_lengths_);
  std::vector<uint8_t>().swap(relay_addrs_);
  relay_counters_ = nullptr;
  relay_counter_members_ = 0;
  relay_counters_pin_.Reset();
}

void UdpSocket::OnWritable() {
  const int fd = this->fd();
  const size_t chunk = tx_msgs_.size();
  while (!queue_.empty()) {
    size_t n = std::min(queue_.size(), chunk);
    for (size_t k = 0; k < n; k++) {
      auto& q = queue_.At(k);
      tx_iov_[k].iov_base = q.bytes.data();
      tx_iov_[k].iov_len = q.bytes.size();
      msghdr& h = tx_msgs_[k].msg_hdr;
      h.msg_name = &q.dest.name;
      h.msg_namelen = q.dest.len;
      h.msg_iov = &tx_iov_[k];
      h.msg_iovlen = 1;
      h.msg_control = nullptr;
      h.msg_controllen = 0;
      h.msg_flags = 0;
    }
    int r = ::sendmmsg(fd, tx_msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT);
    size_t pop = 0;
    if (r > 0) {
      for (int k = 0; k < r; k++) stats_[kTxBytes] += tx_msgs_[k].msg_len;
      stats_[kTxDatagrams] += r;
      pop = r;
    } else {
      int err = r == 0 ? EAGAIN : errno;
      if (err == EINTR) continue;
      if (WouldBlock(err)) break;  // wait for the next UV_WRITABLE
      stats_[kTxErrors] += 1;
      pop = 1;
    }
    queue_.Pop(pop);
  }
  WantWritable(!queue_.empty());
}

}  // namespace

Napi::Object InitUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("UdpSocket", UdpSocket::Define(env));
  return exports;
}

}  // namespace etherlink
