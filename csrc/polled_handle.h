// One fd polled on Node's own libuv loop for an ObjectWrap that hands batches
// to JS: FdPoller owns the fd and its uv_poll_t; PolledHandle<T> adds the JS half
// (pause/resume/ref/unref/close, env teardown, pinned memory, the batch callback).
#pragma once
#include <napi.h>
#include <unistd.h>
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "errors.h"

namespace etherlink {

// Batches read per readable wake-up before yielding back to the loop, so one
// busy device or socket cannot starve the others (and timers) on the same loop.
constexpr int kMaxBatchesPerWake = 4;

// An fd that closes itself unless released (constructors that may throw).
struct UniqueFd {
  int fd = -1;
  explicit UniqueFd(int f = -1) : fd(f) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() {
    if (fd >= 0) ::close(fd);
  }
  int Release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

// The loop-facing half: the fd and a malloc'd uv_poll_t, polled for readable
// unless paused and writable while the owner has frames waiting.
class FdPoller {
 public:
  // Takes ownership of fd (closed here on failure). `owner` is handed to cb as
  // handle->data. Returns 0 or a negative uv error code.
  int Open(uv_loop_t* loop, int fd, void* owner, uv_poll_cb cb);
  void SetPaused(bool paused) {
    paused_ = paused;
    Update();
  }
  void SetWantWritable(bool want) {
    if (want == want_writable_) return;
    want_writable_ = want;
    Update();
  }
  void Ref();
  void Unref();
  // Stop polling and close the fd now (epoll forgets it synchronously, so the
  // port or device is free when this returns); the handle is freed on the next
  // loop turn by libc's free(), not by code in this addon: a worker may unload
  // the addon before its loop runs the last close callbacks.
  void Close();
  // Where poll failures are counted (the owner's rxErrors), or null.
  void set_error_counter(double* counter) { error_counter_ = counter; }
  void CountError() {
    if (error_counter_ != nullptr) *error_counter_ += 1;
  }
  int fd() const { return fd_; }
  bool paused() const { return paused_; }

 private:
  void Update();

  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  uv_poll_cb cb_ = nullptr;
  int events_ = 0;  // what the handle polls for now
  bool paused_ = false;
  bool want_writable_ = false;
  double* error_counter_ = nullptr;
};

// The JS half, for `class T : public PolledHandle<T>`. T provides
//   void OnReadable();   read batches, Deliver() each
// and may provide
//   void OnWritable();   flush what waits (then WantWritable(false) when empty)
//   void OnClosed();     drop native state that needs the fd (queues)
// An open handle keeps its JS wrapper alive; close() lets go, and is safe from
// inside the batch callback (JS references are released after it returns).
template <typename T>
class PolledHandle : public Napi::ObjectWrap<T> {
 public:
  using Props = std::vector<Napi::ClassPropertyDescriptor<T>>;

  // T's class with pause(), resume(), ref(), unref() and close() added to `props`.
  static Napi::Function DefinePolledClass(Napi::Env env, const char* name, Props props) {
    using Method = typename Napi::ObjectWrap<T>::InstanceVoidMethodCallback;
    props.push_back(Napi::ObjectWrap<T>::InstanceMethod("pause", static_cast<Method>(&PolledHandle::JsPause)));
    props.push_back(Napi::ObjectWrap<T>::InstanceMethod("resume", static_cast<Method>(&PolledHandle::JsResume)));
    props.push_back(Napi::ObjectWrap<T>::InstanceMethod("ref", static_cast<Method>(&PolledHandle::JsRef)));
    props.push_back(Napi::ObjectWrap<T>::InstanceMethod("unref", static_cast<Method>(&PolledHandle::JsUnref)));
    props.push_back(Napi::ObjectWrap<T>::InstanceMethod("close", static_cast<Method>(&PolledHandle::JsClose)));
    return Napi::ObjectWrap<T>::DefineClass(env, name, props);
  }

 protected:
  explicit PolledHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<T>(info) {}

  // Runs after T's members are gone: close the fd and handle without T's OnClosed().
  ~PolledHandle() override {
    if (!closed_) {
      closed_ = true;
      poller_.Close();
    }
    RemoveCleanupHook();
  }

  // Keep JS memory the native side writes into alive for as long as we are open.
  void Pin(const Napi::Value& v) { pins_.push_back(Napi::Persistent(v)); }

  // Last step of T's constructor: own `fd` (closed on failure too), poll it,
  // and stay alive until close(). onBatch(count) is called through Deliver().
  void StartPolling(Napi::Env env, int fd, const Napi::Function& on_batch, const char* resource_name) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ::close(fd);
      ThrowErrno(env, EINVAL, "napi_get_uv_event_loop", "cannot reach the Node.js event loop");
    }
    int rc = poller_.Open(loop, fd, static_cast<T*>(this), &PolledHandle::OnPoll);
    if (rc != 0) ThrowErrno(env, -rc, "uv_poll_init", std::string("cannot poll the fd: ") + uv_strerror(rc));
    on_batch_ = Napi::Persistent(on_batch);
    async_ = std::make_unique<Napi::AsyncContext>(env, resource_name, this->Value());
    Napi::ObjectWrap<T>::Ref();
    self_ref_ = true;
    if (napi_add_env_cleanup_hook(env, &PolledHandle::OnEnvCleanup, this) == napi_ok) hook_registered_ = true;
  }

  // onBatch(count) via napi_make_callback, so microtasks queued by JS run after
  // each batch. False when reading must stop: closed inside, or the callback
  // threw (reported as an uncaught exception: nobody above us can catch it).
  bool Deliver(uint32_t count) {
    Napi::Env env = this->Env();
    Napi::HandleScope scope(env);
    // A local handle to our own wrapper keeps it alive even if JS closes and drops it mid-callback.
    napi_value self = this->Value();
    napi_value fn = on_batch_.Value();
    napi_value arg;
    napi_create_uint32(env, count, &arg);
    napi_value result;
    in_callback_ = true;
    napi_status status = napi_make_callback(env, *async_, self, fn, 1, &arg, &result);
    in_callback_ = false;
    bool ok = status == napi_ok;
    if (!ok) {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok && exc != nullptr) napi_fatal_exception(env, exc);
    }
    if (release_pending_) ReleaseJs();
    return ok && !closed_;
  }

  void WantWritable(bool want) { poller_.SetWantWritable(want); }
  int fd() const { return poller_.fd(); }
  bool closed() const { return closed_; }
  bool paused() const { return poller_.paused(); }
  FdPoller& poller() { return poller_; }

  // CRTP defaults; T hides the ones it needs.
  void OnWritable() {}
  void OnClosed() {}

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events) {
    T* self = static_cast<T*>(handle->data);
    if (self == nullptr || self->closed_) return;
    if (status < 0) {
      self->poller_.CountError();
      return;
    }
    if (events & UV_WRITABLE) self->OnWritable();
    if ((events & UV_READABLE) && !self->closed_ && !self->paused()) self->OnReadable();
  }

  static void OnEnvCleanup(void* arg) {
    // Process or worker exit: release the fd and handle; JS references die with the env.
    auto* self = static_cast<PolledHandle*>(arg);
    self->hook_registered_ = false;
    self->CloseHandles();
  }

  void CloseHandles() {
    if (closed_) return;
    closed_ = true;
    poller_.Close();
    static_cast<T*>(this)->OnClosed();
  }

  void RemoveCleanupHook() {
    if (!hook_registered_) return;
    napi_remove_env_cleanup_hook(this->Env(), &PolledHandle::OnEnvCleanup, this);
    hook_registered_ = false;
  }

  void ReleaseJs() {
    release_pending_ = false;
    async_.reset();
    on_batch_.Reset();
    pins_.clear();
    if (self_ref_) {
      self_ref_ = false;
      Napi::ObjectWrap<T>::Unref();
    }
  }

  void JsPause(const Napi::CallbackInfo&) {
    if (!closed_) poller_.SetPaused(true);
  }
  void JsResume(const Napi::CallbackInfo&) {
    if (!closed_) poller_.SetPaused(false);
  }
  void JsRef(const Napi::CallbackInfo&) { poller_.Ref(); }
  void JsUnref(const Napi::CallbackInfo&) { poller_.Unref(); }
  // Idempotent.
  void JsClose(const Napi::CallbackInfo&) {
    CloseHandles();
    RemoveCleanupHook();
    // Inside onBatch the async context and callback are still in use: release after it returns.
    if (in_callback_) {
      release_pending_ = true;
    } else {
      ReleaseJs();
    }
  }

  FdPoller poller_;
  bool closed_ = false;
  bool in_callback_ = false;
  bool release_pending_ = false;
  bool hook_registered_ = false;
  bool self_ref_ = false;
  Napi::FunctionReference on_batch_;
  std::unique_ptr<Napi::AsyncContext> async_;
  std::vector<Napi::Reference<Napi::Value>> pins_;
};

}  // namespace etherlink
