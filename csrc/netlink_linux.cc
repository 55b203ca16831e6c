// Interface configuration without shelling out to `ip`: MTU, MAC and link
// state through ioctl, addresses through rtnetlink (so an existing address is EEXIST).
#include <napi.h>

#include <net/if.h>  // before any linux/ header, or the two definitions clash
#include <arpa/inet.h>
#include <net/if_arp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "args.h"
#include "errors.h"
#include "polled_handle.h"

namespace etherlink {

namespace {

constexpr int kMinMtu = 68;      // IPv4's minimum; the kernel refuses less
constexpr int kMaxMtu = 65535;   // TAP's ceiling (ETH_MAX_MTU)
constexpr int kNetlinkTimeoutMs = 2000;
constexpr size_t kMacSize = 6;

std::string IfName(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString()) {
    ThrowCode(info.Env(), kErrInvalidArgType, "interface name must be a string");
  }
  std::string name = info[i].As<Napi::String>().Utf8Value();
  if (name.empty() || name.size() >= IFNAMSIZ) {
    ThrowCode(info.Env(), kErrInvalidArgValue,
              "interface name '" + name + "' must be 1.." + std::to_string(IFNAMSIZ - 1) + " bytes");
  }
  return name;
}

void Ioctl(Napi::Env env, unsigned long req, struct ifreq* ifr, const char* what) {
  UniqueFd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (s.fd < 0) {
    int err = errno;
    ThrowErrno(env, err, "socket", std::string("cannot open a control socket: ") + ErrnoAdvice(err));
  }
  if (ioctl(s.fd, req, ifr) < 0) {
    int err = errno;
    std::string msg = std::string(what) + " on " + ifr->ifr_name + " failed: ";
    msg += ErrnoAdvice(err);
    ThrowErrno(env, err, "ioctl", msg);
  }
}

struct ifreq Req(const std::string& name) {
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  return ifr;
}

Napi::Value SetMtu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = IfName(info, 0);
  double mtu = info[1].ToNumber().DoubleValue();
  if (!(mtu >= kMinMtu && mtu <= kMaxMtu) || mtu != static_cast<int>(mtu)) {
    ThrowCode(env, kErrOutOfRange,
              "MTU " + info[1].ToString().Utf8Value() + " is out of range: use an integer from " +
                  std::to_string(kMinMtu) + " to " + std::to_string(kMaxMtu));
  }
  struct ifreq ifr = Req(name);
  ifr.ifr_mtu = static_cast<int>(mtu);
  Ioctl(env, SIOCSIFMTU, &ifr, "setting the MTU");
  return env.Undefined();
}

Napi::Value GetMtu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifreq ifr = Req(IfName(info, 0));
  Ioctl(env, SIOCGIFMTU, &ifr, "reading the MTU");
  return Napi::Number::New(env, ifr.ifr_mtu);
}

Napi::Value SetMac(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = IfName(info, 0);
  RequireArgs(info, 2, "setMac(ifname, mac)");
  Span<uint8_t> mac = BytesArg(info[1], "mac");
  if (mac.length != kMacSize) ThrowCode(env, kErrInvalidArgValue, "MAC address must be 6 bytes");
  if (mac.data[0] & 1) {
    ThrowCode(env, kErrInvalidArgValue,
              "MAC address is a multicast address (lowest bit of the first byte set): use a unicast one");
  }
  struct ifreq ifr = Req(name);
  ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
  std::memcpy(ifr.ifr_hwaddr.sa_data, mac.data, kMacSize);
  Ioctl(env, SIOCSIFHWADDR, &ifr, "setting the MAC address");
  return env.Undefined();
}

Napi::Value GetMac(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifreq ifr = Req(IfName(info, 0));
  Ioctl(env, SIOCGIFHWADDR, &ifr, "reading the MAC address");
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(ifr.ifr_hwaddr.sa_data), kMacSize);
}

Napi::Value SetUp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = IfName(info, 0);
  bool up = info[1].ToBoolean().Value();
  struct ifreq ifr = Req(name);
  Ioctl(env, SIOCGIFFLAGS, &ifr, "reading link flags");
  if (up) {
    ifr.ifr_flags |= IFF_UP;
  } else {
    ifr.ifr_flags &= ~IFF_UP;
  }
  Ioctl(env, SIOCSIFFLAGS, &ifr, up ? "setting the link up" : "setting the link down");
  return env.Undefined();
}

// getFlags(ifname): SIOCGIFFLAGS, a short: IFF_UP and IFF_RUNNING, but not IFF_LOWER_UP (bit 16).
Napi::Value GetFlags(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifreq ifr = Req(IfName(info, 0));
  Ioctl(env, SIOCGIFFLAGS, &ifr, "reading link flags");
  return Napi::Number::New(env, static_cast<unsigned short>(ifr.ifr_flags));
}

Napi::Value IfIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = IfName(info, 0);
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) {
    int err = errno;
    ThrowErrno(env, err, "if_nametoindex", "no interface named '" + name + "': " + ErrnoAdvice(err));
  }
  return Napi::Number::New(env, idx);
}

void AddAttr(struct nlmsghdr* n, size_t cap, uint16_t type, const void* data, size_t len) {
  size_t rtalen = RTA_LENGTH(len);
  struct rtattr* rta = reinterpret_cast<struct rtattr*>(reinterpret_cast<char*>(n) + NLMSG_ALIGN(n->nlmsg_len));
  if (NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(rtalen) > cap) return;
  rta->rta_type = type;
  rta->rta_len = static_cast<unsigned short>(rtalen);
  std::memcpy(RTA_DATA(rta), data, len);
  n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(rtalen);
}

// addAddress(ifindex, family 4|6, addrBuf, prefix, noDad)
Napi::Value AddAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireArgs(info, 5, "addAddress(ifindex, family, addr, prefix, noDad)");
  uint32_t ifindex = info[0].ToNumber().Uint32Value();
  int family = info[1].ToNumber().Int32Value();
  Span<uint8_t> addr = BytesArg(info[2], "addr");
  int prefix = info[3].ToNumber().Int32Value();
  bool no_dad = info[4].ToBoolean().Value();
  size_t alen = family == 4 ? 4 : 16;
  int maxp = family == 4 ? 32 : 128;
  if ((family != 4 && family != 6) || addr.length != alen) {
    ThrowCode(env, kErrInvalidArgValue, "address family must be 4 or 6 with a 4- or 16-byte address");
  }
  if (prefix < 0 || prefix > maxp) {
    ThrowCode(env, kErrOutOfRange,
              "prefix length /" + std::to_string(prefix) + " is out of range: IPv" + std::to_string(family) +
                  " takes 0.." + std::to_string(maxp));
  }

  alignas(struct nlmsghdr) char buf[256];
  std::memset(buf, 0, sizeof buf);
  struct nlmsghdr* n = reinterpret_cast<struct nlmsghdr*>(buf);
  n->nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
  n->nlmsg_type = RTM_NEWADDR;
  n->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  n->nlmsg_seq = 1;
  struct ifaddrmsg* ifa = static_cast<struct ifaddrmsg*>(NLMSG_DATA(n));
  ifa->ifa_family = family == 4 ? AF_INET : AF_INET6;
  ifa->ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa->ifa_index = ifindex;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  if (no_dad && family == 6) ifa->ifa_flags |= IFA_F_NODAD;
  AddAttr(n, sizeof buf, IFA_LOCAL, addr.data, alen);
  AddAttr(n, sizeof buf, IFA_ADDRESS, addr.data, alen);
  if (family == 4 && prefix < 31) {
    uint32_t a;
    std::memcpy(&a, addr.data, 4);
    uint32_t mask = prefix == 0 ? 0 : htonl(~((1u << (32 - prefix)) - 1));
    uint32_t brd = a | ~mask;
    AddAttr(n, sizeof buf, IFA_BROADCAST, &brd, 4);
  }

  UniqueFd s(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (s.fd < 0) {
    int err = errno;
    ThrowErrno(env, err, "socket", std::string("cannot open a netlink socket: ") + ErrnoAdvice(err));
  }
  struct timeval tv = {kNetlinkTimeoutMs / 1000, (kNetlinkTimeoutMs % 1000) * 1000};
  setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_nl sa;
  std::memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  if (sendto(s.fd, n, n->nlmsg_len, 0, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
    int err = errno;
    ThrowErrno(env, err, "sendto", std::string("netlink request failed: ") + ErrnoAdvice(err));
  }
  alignas(struct nlmsghdr) char reply[4096];
  ssize_t len = recv(s.fd, reply, sizeof reply, 0);
  if (len < 0) {
    int err = errno;
    ThrowErrno(env, err, "recv", std::string("no netlink answer: ") + ErrnoAdvice(err));
  }
  char text[INET6_ADDRSTRLEN] = {0};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, addr.data, text, sizeof text);
  std::string what = std::string(text) + "/" + std::to_string(prefix);
  for (struct nlmsghdr* h = reinterpret_cast<struct nlmsghdr*>(reply); NLMSG_OK(h, static_cast<unsigned>(len));
       h = NLMSG_NEXT(h, len)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      struct nlmsgerr* e = static_cast<struct nlmsgerr*>(NLMSG_DATA(h));
      int err = -e->error;
      if (err == 0) return env.Undefined();
      std::string msg = "adding " + what + " to interface index " + std::to_string(ifindex) + " failed: ";
      if (err == EEXIST) {
        msg += "the address already exists on the interface";
      } else if (err == ENODEV) {
        msg += "no such interface in this network namespace";
      } else {
        msg += ErrnoAdvice(err);
      }
      ThrowErrno(env, err, "RTM_NEWADDR", msg);
    }
  }
  ThrowErrno(env, EPROTO, "RTM_NEWADDR", "netlink gave no acknowledgement for adding " + what);
}

}  // namespace

Napi::Object InitNetlink(Napi::Env env, Napi::Object exports) {
  exports.Set("setMtu", Napi::Function::New(env, SetMtu, "setMtu"));
  exports.Set("getMtu", Napi::Function::New(env, GetMtu, "getMtu"));
  exports.Set("setMac", Napi::Function::New(env, SetMac, "setMac"));
  exports.Set("getMac", Napi::Function::New(env, GetMac, "getMac"));
  exports.Set("setUp", Napi::Function::New(env, SetUp, "setUp"));
  exports.Set("getFlags", Napi::Function::New(env, GetFlags, "getFlags"));
  exports.Set("ifIndex", Napi::Function::New(env, IfIndex, "ifIndex"));
  exports.Set("addAddress", Napi::Function::New(env, AddAddress, "addAddress"));
  return exports;
}

}  // namespace etherlink
