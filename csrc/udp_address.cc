// Bind addresses: parsing the text an embedder gives, and advice for the
// errnos that creating and binding a UDP socket can meet.
#include "udp_address.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <cerrno>
#include <cstdlib>

#include "errors.h"

namespace etherlink {

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

}  // namespace etherlink
