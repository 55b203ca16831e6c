// Batched AEAD for transport messages: ChaCha20-Poly1305 (or AES-256-GCM) over a
// whole batch in one call, through OpenSSL's EVP as linked into node, one context per
// key — or "none" (--insecure): the same batches and copies, a zero tag, no crypto.
#include <napi.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "args.h"
#include "errors.h"

namespace etherlink {
namespace {

constexpr size_t kKeySize = 32;
constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;
// The transport header (prefix, receiver index, counter) is the associated data,
// and its counter field (big-endian u64 at byte 8) is the nonce: one source of truth.
constexpr size_t kHeaderSize = 16;
constexpr size_t kCounterOffset = 8;
// WireGuard/Noise nonce: 4 zero bytes, then the counter little-endian.
constexpr size_t kNonceCounterOffset = 4;
// Larger than any UDP payload; keeps every length an int for EVP.
constexpr size_t kMaxMessage = 1 << 17;

// Codes of this concern; argument codes come from errors.h.
constexpr const char* kErrInvalidKey = "ERR_INVALID_KEY";
constexpr const char* kErrAeadClosed = "ERR_AEAD_CLOSED";
constexpr const char* kErrCryptoFailed = "ERR_CRYPTO_OPERATION_FAILED";

inline uint64_t ReadBE64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

inline void CounterNonce(uint64_t counter, uint8_t nonce[kNonceSize]) {
  std::memset(nonce, 0, kNonceCounterOffset);
  for (size_t i = 0; i < 8; i++) nonce[kNonceCounterOffset + i] = static_cast<uint8_t>(counter >> (8 * i));
}

// [a, a+alen) and [b, b+blen) share a byte.
inline bool Overlaps(const uint8_t* a, size_t alen, const uint8_t* b, size_t blen) {
  return alen > 0 && blen > 0 && a < b + blen && b < a + alen;
}

class AeadKey : public Napi::ObjectWrap<AeadKey> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "AeadKey",
                       {
                           InstanceMethod<&AeadKey::SealBatch>("sealBatch"),
                           InstanceMethod<&AeadKey::OpenBatch>("openBatch"),
                           InstanceMethod<&AeadKey::SealOne>("sealOne"),
                           InstanceMethod<&AeadKey::OpenOne>("openOne"),
                           InstanceMethod<&AeadKey::Close>("close"),
                       });
  }

  AeadKey(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AeadKey>(info) {
    Napi::Env env = info.Env();
    RequireArgs(info, 2, "AeadKey(algorithm: string, key: Uint8Array)");
    if (!info[0].IsString()) ThrowCode(env, kErrInvalidArgType, "AeadKey: algorithm must be a string");
    std::string algorithm = info[0].As<Napi::String>().Utf8Value();
    const EVP_CIPHER* cipher = nullptr;
    if (algorithm == "none") {
      null_ = true;
    } else if (algorithm == "chacha20-poly1305") {
      cipher = EVP_chacha20_poly1305();
    } else if (algorithm == "aes-256-gcm") {
      cipher = EVP_aes_256_gcm();
    } else {
      ThrowCode(env, kErrInvalidArgValue, "unknown AEAD '" + algorithm + "': use 'chacha20-poly1305', 'aes-256-gcm' or 'none'");
    }
    Span<uint8_t> key = BytesArg(info[1], "key");
    if (key.length != kKeySize) ThrowCode(env, kErrInvalidKey, "AEAD key must be 32 bytes");
    if (null_) return;
    cipher_ = cipher;
    std::memcpy(key_, key.data, kKeySize);
    // A transport key is used in one direction only (a keypair seals with one
    // key and opens with the other), so each context is made on first use:
    // a switch holding thousands of sessions keeps half the OpenSSL state.
    // (Should OpenSSL fail to make one, that seal or open throws ERR_CRYPTO_FAILED.)
  }

  ~AeadKey() override { Free(); }

 private:
  const EVP_CIPHER* cipher_ = nullptr;
  // Kept until both contexts exist (or close), for the one made on first use.
  uint8_t key_[kKeySize] = {};
  EVP_CIPHER_CTX* enc_ = nullptr;
  EVP_CIPHER_CTX* dec_ = nullptr;
  // "none": no contexts; a message is copied and its tag slot zeroed.
  bool null_ = false;
  bool closed_ = false;

  // The context for sealing (encrypt) or opening, with the key schedule done
  // once: per message only the nonce changes (EVP_*Init_ex with a null key).
  bool EnsureContext(bool encrypt) {
    EVP_CIPHER_CTX*& ctx = encrypt ? enc_ : dec_;
    if (ctx != nullptr) return true;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == nullptr) return false;
    int ok = encrypt ? EVP_EncryptInit_ex(ctx, cipher_, nullptr, key_, nullptr)
                     : EVP_DecryptInit_ex(ctx, cipher_, nullptr, key_, nullptr);
    if (ok != 1) {
      EVP_CIPHER_CTX_free(ctx);
      ctx = nullptr;
      return false;
    }
    if (enc_ != nullptr && dec_ != nullptr) OPENSSL_cleanse(key_, kKeySize);
    return true;
  }

  void Free() {
    closed_ = true;
    // EVP_CIPHER_CTX_free cleanses the key schedule.
    EVP_CIPHER_CTX_free(enc_);
    EVP_CIPHER_CTX_free(dec_);
    enc_ = nullptr;
    dec_ = nullptr;
    OPENSSL_cleanse(key_, kKeySize);
  }

  void CheckOpen(Napi::Env env) {
    if (closed_) ThrowCode(env, kErrAeadClosed, "AeadKey used after close()");
  }

  bool Seal(const uint8_t nonce[kNonceSize], const uint8_t* ad, size_t adLen, const uint8_t* in, size_t len,
            uint8_t* out, uint8_t* tag) {
    if (null_) {
      std::memmove(out, in, len);
      std::memset(tag, 0, kTagSize);
      return true;
    }
    int n = 0;
    if (!EnsureContext(true)) return false;
    if (EVP_EncryptInit_ex(enc_, nullptr, nullptr, nullptr, nonce) != 1) return false;
    if (adLen > 0 && EVP_EncryptUpdate(enc_, nullptr, &n, ad, static_cast<int>(adLen)) != 1) return false;
    if (len > 0 && EVP_EncryptUpdate(enc_, out, &n, in, static_cast<int>(len)) != 1) return false;
    if (EVP_EncryptFinal_ex(enc_, out + n, &n) != 1) return false;
    return EVP_CIPHER_CTX_ctrl(enc_, EVP_CTRL_AEAD_GET_TAG, kTagSize, tag) == 1;
  }

  bool Open(const uint8_t nonce[kNonceSize], const uint8_t* ad, size_t adLen, const uint8_t* in, size_t len,
            const uint8_t* tag, uint8_t* out) {
    if (null_) {
      std::memmove(out, in, len);
      return true;
    }
    int n = 0;
    uint8_t tagCopy[kTagSize];
    std::memcpy(tagCopy, tag, kTagSize);
    if (!EnsureContext(false)) return false;
    if (EVP_DecryptInit_ex(dec_, nullptr, nullptr, nullptr, nonce) != 1) return false;
    if (EVP_CIPHER_CTX_ctrl(dec_, EVP_CTRL_AEAD_SET_TAG, kTagSize, tagCopy) != 1) return false;
    if (adLen > 0 && EVP_DecryptUpdate(dec_, nullptr, &n, ad, static_cast<int>(adLen)) != 1) return false;
    if (len > 0 && EVP_DecryptUpdate(dec_, out, &n, in, static_cast<int>(len)) != 1) return false;
    return EVP_DecryptFinal_ex(dec_, out + n, &n) == 1;
  }

  // sealBatch(src, srcOffsets, srcLengths, count, dst, dstOffsets) -> count.
  // The caller has written the 16-byte header at dst[dstOffsets[i]]; we write
  // ciphertext after it and the tag after that: datagram length = 16 + len + 16.
  Napi::Value SealBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    RequireArgs(info, 6, "sealBatch(src, srcOffsets, srcLengths, count, dst, dstOffsets)");
    Span<uint8_t> src = BytesArg(info[0], "src");
    Span<uint32_t> srcOffArg = Uint32ArrayArg(info[1], "srcOffsets");
    Span<uint32_t> srcLenArg = Uint32ArrayArg(info[2], "srcLengths");
    Span<uint8_t> dst = BytesArg(info[4], "dst");
    Span<uint32_t> dstOffArg = Uint32ArrayArg(info[5], "dstOffsets");
    size_t count = CountArg(info[3], {{"srcOffsets", srcOffArg.length},
                                      {"srcLengths", srcLenArg.length},
                                      {"dstOffsets", dstOffArg.length}});
    const uint32_t* srcOff = srcOffArg.data;
    const uint32_t* srcLen = srcLenArg.data;
    const uint32_t* dstOff = dstOffArg.data;
    // Validate the whole batch first, so a bad entry never leaves a half-sealed batch.
    for (size_t i = 0; i < count; i++) {
      size_t so = srcOff[i], sl = srcLen[i], d = dstOff[i];
      if (sl > kMaxMessage || so + sl > src.length || d + kHeaderSize + sl + kTagSize > dst.length) {
        ThrowCode(env, kErrOutOfRange, "sealBatch: frame " + std::to_string(i) + " lies outside its buffer");
      }
      const uint8_t* in = src.data + so;
      uint8_t* out = dst.data + d + kHeaderSize;
      // In place (ciphertext exactly over plaintext) is fine for EVP; partial overlap is not.
      if (in != out && Overlaps(in, sl, out, sl + kTagSize)) {
        ThrowCode(env, kErrOutOfRange, "sealBatch: frame " + std::to_string(i) + " partly overlaps its output");
      }
    }
    uint8_t nonce[kNonceSize];
    for (size_t i = 0; i < count; i++) {
      size_t sl = srcLen[i];
      uint8_t* hdr = dst.data + dstOff[i];
      CounterNonce(ReadBE64(hdr + kCounterOffset), nonce);
      uint8_t* out = hdr + kHeaderSize;
      if (!Seal(nonce, hdr, kHeaderSize, src.data + srcOff[i], sl, out, out + sl)) {
        ThrowCode(env, kErrCryptoFailed, "sealBatch: OpenSSL failed on frame " + std::to_string(i));
      }
    }
    return Napi::Number::New(env, static_cast<double>(count));
  }

  // openBatch(src, srcOffsets, srcLengths, count, dst, dstOffsets, results) -> number authenticated.
  // Datagram i is src[srcOffsets[i]..+srcLengths[i]] (header, ciphertext, tag);
  // its plaintext (srcLengths[i] - 32 bytes) goes to dst[dstOffsets[i]]. results[i]
  // is 1 if it authenticated, else 0 (and the plaintext area is zeroed). Never throws on a bad tag.
  Napi::Value OpenBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    RequireArgs(info, 7, "openBatch(src, srcOffsets, srcLengths, count, dst, dstOffsets, results)");
    Span<uint8_t> src = BytesArg(info[0], "src");
    Span<uint32_t> srcOffArg = Uint32ArrayArg(info[1], "srcOffsets");
    Span<uint32_t> srcLenArg = Uint32ArrayArg(info[2], "srcLengths");
    Span<uint8_t> dst = BytesArg(info[4], "dst");
    Span<uint32_t> dstOffArg = Uint32ArrayArg(info[5], "dstOffsets");
    Span<uint8_t> results = BytesArg(info[6], "results");
    size_t count = CountArg(info[3], {{"srcOffsets", srcOffArg.length},
                                      {"srcLengths", srcLenArg.length},
                                      {"dstOffsets", dstOffArg.length},
                                      {"results", results.length}});
    const uint32_t* srcOff = srcOffArg.data;
    const uint32_t* srcLen = srcLenArg.data;
    const uint32_t* dstOff = dstOffArg.data;
    for (size_t i = 0; i < count; i++) {
      size_t so = srcOff[i], sl = srcLen[i], d = dstOff[i];
      if (sl > kMaxMessage || so + sl > src.length) {
        ThrowCode(env, kErrOutOfRange, "openBatch: datagram " + std::to_string(i) + " lies outside src");
      }
      if (sl < kHeaderSize + kTagSize) continue;  // reported as failed below
      size_t pl = sl - kHeaderSize - kTagSize;
      if (d + pl > dst.length) {
        ThrowCode(env, kErrOutOfRange, "openBatch: plaintext " + std::to_string(i) + " does not fit in dst");
      }
      const uint8_t* in = src.data + so + kHeaderSize;
      uint8_t* out = dst.data + d;
      if (out != in && Overlaps(src.data + so, sl, out, pl)) {
        ThrowCode(env, kErrOutOfRange, "openBatch: datagram " + std::to_string(i) + " partly overlaps its output");
      }
    }
    uint8_t nonce[kNonceSize];
    size_t ok = 0;
    for (size_t i = 0; i < count; i++) {
      size_t sl = srcLen[i];
      if (sl < kHeaderSize + kTagSize) {
        results.data[i] = 0;
        continue;
      }
      size_t pl = sl - kHeaderSize - kTagSize;
      const uint8_t* hdr = src.data + srcOff[i];
      uint8_t* out = dst.data + dstOff[i];
      CounterNonce(ReadBE64(hdr + kCounterOffset), nonce);
      bool good = Open(nonce, hdr, kHeaderSize, hdr + kHeaderSize, pl, hdr + kHeaderSize + pl, out);
      // Never leave unauthenticated plaintext where a careless caller could forward it.
      if (!good) OPENSSL_cleanse(out, pl);
      results.data[i] = good ? 1 : 0;
      ok += good ? 1 : 0;
    }
    return Napi::Number::New(env, static_cast<double>(ok));
  }

  static const uint8_t* NonceArg(const Napi::CallbackInfo& info) {
    Span<uint8_t> n = BytesArg(info[0], "nonce");
    if (n.length != kNonceSize) ThrowCode(info.Env(), kErrOutOfRange, "nonce must be 12 bytes");
    return n.data;
  }

  // sealOne(nonce12, ad, plaintext) -> Buffer(ciphertext || tag). Slow path: test vectors, control messages.
  Napi::Value SealOne(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    RequireArgs(info, 3, "sealOne(nonce, ad, plaintext)");
    const uint8_t* nonce = NonceArg(info);
    Span<uint8_t> ad = BytesArg(info[1], "ad");
    Span<uint8_t> pt = BytesArg(info[2], "plaintext");
    if (pt.length > kMaxMessage || ad.length > kMaxMessage) ThrowCode(env, kErrOutOfRange, "sealOne: input too large");
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, pt.length + kTagSize);
    if (!Seal(nonce, ad.data, ad.length, pt.data, pt.length, out.Data(), out.Data() + pt.length)) {
      ThrowCode(env, kErrCryptoFailed, "sealOne: OpenSSL failed");
    }
    return out;
  }

  // openOne(nonce12, ad, sealed) -> Buffer | null.
  Napi::Value OpenOne(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    RequireArgs(info, 3, "openOne(nonce, ad, sealed)");
    const uint8_t* nonce = NonceArg(info);
    Span<uint8_t> ad = BytesArg(info[1], "ad");
    Span<uint8_t> ct = BytesArg(info[2], "sealed");
    if (ct.length > kMaxMessage || ad.length > kMaxMessage) ThrowCode(env, kErrOutOfRange, "openOne: input too large");
    if (ct.length < kTagSize) return env.Null();
    size_t pl = ct.length - kTagSize;
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, pl);
    if (!Open(nonce, ad.data, ad.length, ct.data, pl, ct.data + pl, out.Data())) {
      OPENSSL_cleanse(out.Data(), pl);
      return env.Null();
    }
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Free();
    return info.Env().Undefined();
  }
};

}  // namespace

Napi::Object InitAead(Napi::Env env, Napi::Object exports) {
  exports.Set("AeadKey", AeadKey::Define(env));
  return exports;
}

}  // namespace etherlink
