// The bounded egress queue of a TAP or UDP socket: frames that met EAGAIN wait
// here for UV_WRITABLE. A full queue drops and counts, like a switch port; it never grows.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace etherlink {

// Most frames any queue may hold (the writeQueue / sendQueue options' ceiling).
constexpr uint32_t kMaxQueueFrames = 1 << 16;

// The queue's counters, in the owner's JS Float64Array of stats.
struct QueueCounters {
  size_t dropped;  // index of "full queue, frame dropped"
  size_t queued;   // index of "frame waited in the queue"
  size_t depth;    // index of "frames waiting now"
};

// A frame needs nothing beyond its bytes (TAP).
struct NoDestination {};

// A ring of reusable byte vectors: each slot keeps its capacity, so a steady
// state of queueing never allocates. Dest rides along with each frame (the
// UDP destination address); order is FIFO. Callers keep order by queueing
// every later frame of a write while the queue is not empty.
template <typename Dest = NoDestination>
class SendQueue {
 public:
  struct Entry {
    std::vector<uint8_t> bytes;
    Dest dest;
  };

  // Sizes the ring once; `stats` is the owner's counter array.
  void Init(size_t capacity, double* stats, QueueCounters counters) {
    ring_.resize(capacity);
    stats_ = stats;
    counters_ = counters;
  }

  bool empty() const { return len_ == 0; }
  size_t size() const { return len_; }

  // Copies the frame in; false (and counted as dropped) when full.
  bool Push(const uint8_t* data, size_t len, const Dest& dest = Dest{}) {
    if (len_ >= ring_.size()) {
      stats_[counters_.dropped] += 1;
      return false;
    }
    Entry& e = ring_[(head_ + len_) % ring_.size()];
    e.bytes.assign(data, data + len);
    e.dest = dest;
    len_++;
    stats_[counters_.queued] += 1;
    stats_[counters_.depth] = static_cast<double>(len_);
    return true;
  }

  // The k-th waiting frame (0 = the oldest); k < size().
  Entry& At(size_t k) { return ring_[(head_ + k) % ring_.size()]; }

  // Forget the n oldest frames (sent, or failed for good).
  void Pop(size_t n = 1) {
    head_ = (head_ + n) % ring_.size();
    len_ -= n;
    stats_[counters_.depth] = static_cast<double>(len_);
  }

  // On close: drop everything and give the memory back.
  void Release() {
    std::vector<Entry>().swap(ring_);
    head_ = len_ = 0;
    if (stats_ != nullptr) stats_[counters_.depth] = 0;
  }

 private:
  std::vector<Entry> ring_;
  size_t head_ = 0;
  size_t len_ = 0;
  double* stats_ = nullptr;
  QueueCounters counters_{};
};

}  // namespace etherlink
