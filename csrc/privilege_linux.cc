// Least privilege: once the TAP exists and is configured, give up every
// capability — in every thread, since Linux credentials are per thread.
// Its state is the process's, not an env's: one signal handler serves every
// worker's copy of the addon, so a broadcast holds a process-wide lock.
#include <napi.h>
#include <dlfcn.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <dirent.h>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include "errors.h"

namespace etherlink {
namespace {

// How long to wait for the other threads to drop theirs. They run the handler
// as soon as the signal interrupts them; a thread that blocks the signal never does.
constexpr long kBroadcastWaitMs = 500;
constexpr long kBroadcastPollNs = 1000000;  // 1 ms

constexpr const char* kErrDlopenFailed = "ERR_DLOPEN_FAILED";

// One broadcast at a time: two workers dropping at once would share the counters.
std::mutex g_broadcast;
std::atomic<int> g_acked{0};
std::atomic<int> g_failed{0};
std::atomic<int> g_errno{0};
std::atomic<bool> g_dropBounding{false};
int g_lastCap = CAP_LAST_CAP;
int g_signal = 0;

int ReadLastCap() {
  FILE* f = std::fopen("/proc/sys/kernel/cap_last_cap", "r");
  int n = CAP_LAST_CAP;
  if (f != nullptr) {
    if (std::fscanf(f, "%d", &n) != 1) n = CAP_LAST_CAP;
    std::fclose(f);
  }
  return n;
}

// Async-signal-safe: raw syscalls only. Returns 0 or an errno.
int DropThisThread() {
  if (g_dropBounding.load()) {
    for (int cap = 0; cap <= g_lastCap; cap++) {
      if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return errno;
    }
  }
  // EINVAL: a kernel before 4.3 has no ambient set, so nothing to clear.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capset, &hdr, data) != 0) return errno;
  return 0;
}

void OnDropSignal(int) {
  int saved = errno;
  int err = DropThisThread();
  if (err != 0) {
    g_errno.store(err);
    g_failed.fetch_add(1);
  }
  g_acked.fetch_add(1);
  errno = saved;
}

// The handler outlives the env that installed it, but Node unloads an addon
// when the last env that loaded it goes (a worker's exit): pin this library for
// the life of the process, or a late signal would jump into unmapped code.
void PinThisLibrary(Napi::Env env) {
  Dl_info self{};
  if (::dladdr(reinterpret_cast<void*>(&OnDropSignal), &self) == 0 || self.dli_fname == nullptr) {
    ThrowCode(env, kErrDlopenFailed, "dropCapabilities: cannot find the addon's own file (dladdr) to keep it loaded");
  }
  // The handle is kept on purpose: RTLD_NODELETE makes the mapping permanent.
  if (::dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) == nullptr) {
    const char* why = ::dlerror();
    ThrowCode(env, kErrDlopenFailed, std::string("dropCapabilities: cannot keep the addon loaded: ") + (why ? why : "dlopen failed"));
  }
}

// A real-time signal nobody else handles; the handler stays installed (it is
// harmless to run again), so a late delivery can never hit a default action.
int InstallHandler(Napi::Env env) {
  if (g_signal != 0) return g_signal;
  PinThisLibrary(env);
  for (int sig = SIGRTMAX - 1; sig > SIGRTMIN + 3; sig--) {
    struct sigaction old = {};
    if (::sigaction(sig, nullptr, &old) != 0) continue;
    if (old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO) != 0) continue;
    struct sigaction sa = {};
    sa.sa_handler = OnDropSignal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(sig, &sa, nullptr) == 0) {
      g_signal = sig;
      return sig;
    }
  }
  ThrowErrno(env, EAGAIN, "sigaction", "dropCapabilities: no free real-time signal to reach the other threads");
}

// A thread that blocks the signal (Node's inspector signal thread blocks them
// all) would never run the handler: skip it rather than wait for it.
bool BlocksSignal(pid_t tid, int sig) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/task/%d/status", static_cast<int>(tid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return false;
  char line[256];
  unsigned long long mask = 0;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, "SigBlk: %llx", &mask) == 1) break;
  }
  std::fclose(f);
  return (mask & (1ULL << (sig - 1))) != 0;
}

bool HasEffective(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  return (data[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap)) != 0;
}

// dropCapabilities() -> { threads, dropped, unreachable, boundingSet: 'cleared' | 'kept' }
// Clears the effective, permitted, inheritable and ambient sets of every thread
// of the process (and the bounding set when CAP_SETPCAP allows it). Throws an
// Error with .code when this thread cannot drop its own.
Napi::Value DropCapabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // A thread waiting here still runs the handler for the broadcast in progress.
  std::lock_guard<std::mutex> lock(g_broadcast);
  g_lastCap = ReadLastCap();
  // Dropping from the bounding set needs CAP_SETPCAP: root has it, a service
  // holding only CAP_NET_ADMIN doesn't — its bounding set is already narrow
  // (systemd CapabilityBoundingSet=, setpriv --bounding-set).
  g_dropBounding.store(HasEffective(CAP_SETPCAP));
  int sig = InstallHandler(env);
  g_acked.store(0);
  g_failed.store(0);
  g_errno.store(0);

  const pid_t pid = ::getpid();
  const pid_t self = static_cast<pid_t>(::syscall(SYS_gettid));
  int sent = 0;
  int threads = 1;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) ThrowErrno(env, errno, "opendir", "dropCapabilities: cannot list /proc/self/task (is /proc mounted?)");
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
    if (tid <= 0 || tid == self) continue;
    threads++;
    if (BlocksSignal(tid, sig)) continue;
    // ESRCH: the thread exited meanwhile, and its credentials with it.
    if (::syscall(SYS_tgkill, pid, tid, sig) == 0) sent++;
  }
  ::closedir(dir);

  int err = DropThisThread();
  if (err != 0) {
    ThrowErrno(env, err, err == EPERM ? "prctl" : "capset", "cannot drop capabilities: " + std::string(std::strerror(err)));
  }

  timespec step{0, kBroadcastPollNs};
  for (long waited = 0; g_acked.load() < sent && waited < kBroadcastWaitMs; waited++) ::nanosleep(&step, nullptr);
  if (g_failed.load() > 0) {
    int e = g_errno.load();
    ThrowErrno(env, e, "capset", "cannot drop the capabilities of " + std::to_string(g_failed.load()) + " thread(s): " + std::strerror(e));
  }

  Napi::Object out = Napi::Object::New(env);
  int acked = g_acked.load();
  out.Set("threads", Napi::Number::New(env, threads));
  out.Set("dropped", Napi::Number::New(env, acked + 1));
  out.Set("unreachable", Napi::Number::New(env, threads - acked - 1));
  out.Set("boundingSet", Napi::String::New(env, g_dropBounding.load() ? "cleared" : "kept"));
  return out;
}

}  // namespace

Napi::Object InitPrivilege(Napi::Env env, Napi::Object exports) {
  exports.Set("dropCapabilities", Napi::Function::New(env, DropCapabilities, "dropCapabilities"));
  return exports;
}

}  // namespace etherlink
