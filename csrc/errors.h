// Native errors as JS Errors carrying .code (the errno name) and a message
// that says what to do about it.
#pragma once
#include <napi.h>
#include <string>

namespace etherlink {

// Throw a JS Error with .code = errno name (e.g. "EPERM"), .errno = -err, .syscall.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message);

// Build (without throwing) the same kind of error.
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& syscall, const std::string& message);

// Human advice for common errnos of device and socket operations.
std::string ErrnoAdvice(int err);

}  // namespace etherlink
