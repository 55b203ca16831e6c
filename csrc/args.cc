// Argument checks: typed views of JS memory through one napi_get_typedarray_info
// call each, options and batch counts with their ranges.
#include "args.h"

#include <string>

#include "errors.h"

namespace etherlink {
namespace {

template <typename T>
Span<T> TypedArg(const Napi::Value& v, napi_typedarray_type want, const char* name, const char* type_name) {
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  // Fails for anything that is not a typed array; `data` already includes the byte offset.
  if (napi_get_typedarray_info(v.Env(), v, &type, &length, &data, nullptr, nullptr) != napi_ok || type != want) {
    ThrowCode(v.Env(), kErrInvalidArgType, std::string(name) + " must be a " + type_name + " (see lib/io/native.ts)");
  }
  return {static_cast<T*>(data), length};
}

}  // namespace

void RequireArgs(const Napi::CallbackInfo& info, size_t count, const char* usage) {
  if (info.Length() < count) ThrowCode(info.Env(), kErrInvalidArgType, std::string("expected ") + usage);
}

Span<uint8_t> BytesArg(const Napi::Value& v, const char* name) {
  return TypedArg<uint8_t>(v, napi_uint8_array, name, "Buffer or Uint8Array");
}

Span<uint32_t> Uint32ArrayArg(const Napi::Value& v, const char* name) {
  return TypedArg<uint32_t>(v, napi_uint32_array, name, "Uint32Array");
}

Span<double> Float64ArrayArg(const Napi::Value& v, const char* name) {
  return TypedArg<double>(v, napi_float64_array, name, "Float64Array");
}

uint32_t U32Option(const Napi::Object& opts, const char* key, uint32_t min, uint32_t max) {
  Napi::Value v = opts.Get(key);
  if (!v.IsNumber()) ThrowCode(opts.Env(), kErrInvalidArgType, std::string("options.") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    ThrowCode(opts.Env(), kErrOutOfRange,
              std::string("options.") + key + " must be an integer in [" + std::to_string(min) + ", " +
                  std::to_string(max) + "]");
  }
  return static_cast<uint32_t>(d);
}

bool BoolOption(const Napi::Object& opts, const char* key) {
  return opts.Has(key) && opts.Get(key).ToBoolean().Value();
}

size_t CountArg(const Napi::Value& v, std::initializer_list<Capacity> capacities) {
  Napi::Env env = v.Env();
  if (!v.IsNumber()) ThrowCode(env, kErrInvalidArgType, "count must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    ThrowCode(env, kErrOutOfRange, "count must be an integer >= 0, got " + std::to_string(d));
  }
  size_t count = static_cast<size_t>(d);
  for (const Capacity& c : capacities) {
    if (count > c.length) {
      ThrowCode(env, kErrOutOfRange,
                std::string(c.name) + " holds " + std::to_string(c.length) + " entries, fewer than count " +
                    std::to_string(count));
    }
  }
  return count;
}

}  // namespace etherlink
