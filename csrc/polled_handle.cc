// FdPoller: the fd and its uv_poll_t, shared by the TAP device, the UDP socket
// and the link watcher (the JS half is the template in polled_handle.h).
#include "polled_handle.h"

#include <unistd.h>

#include <cstdlib>

namespace etherlink {

int FdPoller::Open(uv_loop_t* loop, int fd, void* owner, uv_poll_cb cb) {
  poll_ = static_cast<uv_poll_t*>(std::malloc(sizeof(uv_poll_t)));
  if (poll_ == nullptr) {
    ::close(fd);
    return UV_ENOMEM;
  }
  int rc = uv_poll_init(loop, poll_, fd);
  if (rc != 0) {
    std::free(poll_);  // a failed init never registered the handle with the loop
    poll_ = nullptr;
    ::close(fd);
    return rc;
  }
  poll_->data = owner;
  fd_ = fd;
  cb_ = cb;
  Update();
  return 0;
}

void FdPoller::Update() {
  if (poll_ == nullptr) return;
  int events = (paused_ ? 0 : UV_READABLE) | (want_writable_ ? UV_WRITABLE : 0);
  if (events == events_) return;
  events_ = events;
  if (events == 0) {
    uv_poll_stop(poll_);
  } else if (uv_poll_start(poll_, events, cb_) != 0) {
    events_ = 0;
    CountError();
  }
}

void FdPoller::Ref() {
  if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
}

void FdPoller::Unref() {
  if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
}

void FdPoller::Close() {
  if (poll_ != nullptr) {
    uv_poll_stop(poll_);
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), reinterpret_cast<uv_close_cb>(&::free));
    poll_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  events_ = 0;
}

}  // namespace etherlink
