// Module entry point: registers the TAP device, UDP socket and interface
// configuration functions.
#include <napi.h>

namespace etherlink {
Napi::Object InitTap(Napi::Env env, Napi::Object exports);
Napi::Object InitNetlink(Napi::Env env, Napi::Object exports);
Napi::Object InitUdp(Napi::Env env, Napi::Object exports);
Napi::Object InitAead(Napi::Env env, Napi::Object exports);
Napi::Object InitPrivilege(Napi::Env env, Napi::Object exports);
}  // namespace etherlink

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  etherlink::InitTap(env, exports);
  etherlink::InitNetlink(env, exports);
  etherlink::InitUdp(env, exports);
  etherlink::InitAead(env, exports);
  etherlink::InitPrivilege(env, exports);
  return exports;
}

NODE_API_MODULE(etherlink, Init)
