// UDP GSO/GRO: the run-time probe (the grouping and splitting are inline in
// udp_gso_linux.h, on the per-datagram path).
#include "udp_gso_linux.h"

namespace etherlink {

const char* UdpOffloads::Name() const { return gso && gro ? "gso,gro" : gso ? "gso" : gro ? "gro" : "none"; }

UdpOffloads ProbeUdpOffloads(int fd) {
  int one = 1, zero = 0;
  UdpOffloads o;
  o.gro = ::setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
  o.gso = ::setsockopt(fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof(zero)) == 0;
  return o;
}

}  // namespace etherlink
