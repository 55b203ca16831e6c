// Module entry point: registers the error class hook, the TAP device, the UDP
// socket, the link watcher, interface configuration, AEAD and privilege functions.
// Node calls Init once per env (main thread and each worker, napi_register_module_v1):
// per-env state lives in the env's instance data (errors.cc), never in globals.
#include <napi.h>

#include "errors.h"

namespace etherlink {
Napi::Object InitTap(Napi::Env env, Napi::Object exports);
Napi::Object InitNetlink(Napi::Env env, Napi::Object exports);
Napi::Object InitLinkWatch(Napi::Env env, Napi::Object exports);
Napi::Object InitUdp(Napi::Env env, Napi::Object exports);
Napi::Object InitAead(Napi::Env env, Napi::Object exports);
Napi::Object InitPrivilege(Napi::Env env, Napi::Object exports);
}  // namespace etherlink

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  etherlink::InitErrors(env, exports);
  etherlink::InitTap(env, exports);
  etherlink::InitNetlink(env, exports);
  etherlink::InitLinkWatch(env, exports);
  etherlink::InitUdp(env, exports);
  etherlink::InitAead(env, exports);
  etherlink::InitPrivilege(env, exports);
  return exports;
}

NODE_API_MODULE(etherlink, Init)
