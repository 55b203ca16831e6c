// Errors with codes: every native failure surfaces as Error{code, errno, syscall}.
#include "errors.h"
#include <uv.h>
#include <cerrno>
#include <cstring>

namespace etherlink {

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message) {
  throw ErrnoError(env, err, syscall, message);
}

std::string ErrnoAdvice(int err) {
  switch (err) {
    case EPERM:
    case EACCES:
      return "this needs CAP_NET_ADMIN: run as root, or grant the capability "
             "(e.g. setcap cap_net_admin+ep $(which node), or systemd AmbientCapabilities=CAP_NET_ADMIN)";
    case ENOENT:
      return "/dev/net/tun is missing: load the tun module (modprobe tun) or, in a container, "
             "pass the device through (--device /dev/net/tun)";
    case EBUSY:
      return "the interface name is in use by another process or device: pick another --name";
    case ENODEV:
      return "no such network interface in this network namespace";
    case EADDRINUSE:
      return "the address/port is already in use: stop the other process or choose another port";
    default:
      return std::strerror(err);
  }
}

}  // namespace etherlink
