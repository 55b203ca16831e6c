// Errors with codes: builds every native error as new EtherlinkError(code,
// message, { syscall, errno }), or a plain Error with the same fields before
// the class is registered (or if constructing it fails).
#include "errors.h"
#include <uv.h>
#include <cerrno>
#include <cstring>

namespace etherlink {
namespace {

// Per-env state (napi instance data, so each worker thread has its own): the
// addon's one instance-data slot; anything else per env belongs in here too.
struct EnvData {
  Napi::FunctionReference error_class;
};

EnvData* GetEnvData(Napi::Env env) { return env.GetInstanceData<EnvData>(); }

// The details object: { syscall, errno } for system calls, {} otherwise.
Napi::Object Details(Napi::Env env, const char* syscall, int err) {
  Napi::Object details = Napi::Object::New(env);
  if (syscall != nullptr) {
    details.Set("syscall", Napi::String::New(env, syscall));
    details.Set("errno", Napi::Number::New(env, -err));
  }
  return details;
}

Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message, const char* syscall, int err) {
  EnvData* data = GetEnvData(env);
  if (data != nullptr && !data->error_class.IsEmpty()) {
    try {
      Napi::Object e = data->error_class.New(
          {Napi::String::New(env, code), Napi::String::New(env, message), Details(env, syscall, err)});
      return Napi::Error(env, e);
    } catch (const Napi::Error&) {
      // The constructor threw: the pending exception is cleared; fall back below.
    }
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  if (syscall != nullptr) {
    e.Set("errno", Napi::Number::New(env, -err));
    e.Set("syscall", Napi::String::New(env, syscall));
  }
  return e;
}

// setErrorClass(ctor): native errors become `new ctor(code, message, details)`.
Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    ThrowCode(env, kErrInvalidArgType, "setErrorClass(ctor): ctor must be a class such as EtherlinkError");
  }
  GetEnvData(env)->error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

}  // namespace

void ThrowCode(Napi::Env env, const char* code, const std::string& message) {
  throw MakeError(env, code, message, nullptr, 0);
}

void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message) {
  throw MakeError(env, uv_err_name(-err), message, syscall.c_str(), err);
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

void InitErrors(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new EnvData());  // deleted by node-addon-api when the env goes
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
}

}  // namespace etherlink
