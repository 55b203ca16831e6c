// Argument checks shared by every native entry point: each failure throws an
// EtherlinkError with ERR_INVALID_ARG_TYPE or ERR_OUT_OF_RANGE naming the argument.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace etherlink {

// A view of JS-owned memory, valid while the JS value is alive (pin it to keep it).
template <typename T>
struct Span {
  T* data;
  size_t length;  // in elements
};

// Throws ERR_INVALID_ARG_TYPE with `usage` unless at least `count` arguments came.
void RequireArgs(const Napi::CallbackInfo& info, size_t count, const char* usage);

// A Buffer or Uint8Array (one napi call).
Span<uint8_t> BytesArg(const Napi::Value& v, const char* name);
Span<uint32_t> Uint32ArrayArg(const Napi::Value& v, const char* name);
Span<double> Float64ArrayArg(const Napi::Value& v, const char* name);

// opts[key]: a number that is an integer in [min, max] (ERR_OUT_OF_RANGE otherwise).
uint32_t U32Option(const Napi::Object& opts, const char* key, uint32_t min, uint32_t max);
// opts[key] as a boolean; absent is false.
bool BoolOption(const Napi::Object& opts, const char* key);

// A named array length that a batch count must not exceed.
struct Capacity {
  const char* name;
  size_t length;
};
// A batch count: an integer >= 0 that fits every array it indexes; throws
// ERR_OUT_OF_RANGE naming the array that is too short.
size_t CountArg(const Napi::Value& v, std::initializer_list<Capacity> capacities);

}  // namespace etherlink
