// The addon's one throw path: every native failure is an EtherlinkError (the
// class lib/io/native.ts registers) with a .code, and errno/syscall for system calls.
#pragma once
#include <napi.h>
#include <string>

namespace etherlink {

// Codes for argument problems, as Node names them.
constexpr const char* kErrInvalidArgType = "ERR_INVALID_ARG_TYPE";
constexpr const char* kErrInvalidArgValue = "ERR_INVALID_ARG_VALUE";
constexpr const char* kErrOutOfRange = "ERR_OUT_OF_RANGE";
constexpr const char* kErrInvalidAddress = "ERR_INVALID_ADDRESS";

// Throw EtherlinkError(code, message), e.g. code = kErrOutOfRange.
[[noreturn]] void ThrowCode(Napi::Env env, const char* code, const std::string& message);

// Throw EtherlinkError(uv_err_name(err), message, { syscall, errno: -err }) for a
// failed system call; err is a positive errno ("EPERM").
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message);

// Human advice for common errnos of device and socket operations.
std::string ErrnoAdvice(int err);

// Registers setErrorClass(ctor) and the per-env state it fills.
void InitErrors(Napi::Env env, Napi::Object exports);

}  // namespace etherlink
