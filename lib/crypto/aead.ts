// Transport-message AEAD over whole batches: a typed wrapper of the addon's AeadKey
// (csrc/aead.cc). The 16-byte transport header is the associated data and its counter the nonce.
import { native, type NativeAeadAlgorithm, type NativeAeadKey } from '../io/native.js';
import { EtherlinkError } from '../core/errors.js';
import { AEAD_NONCE_SIZE, KEY_SIZE } from './constants.js';
import { openClear, sealClear } from './clear.js';

/** 'chacha20-poly1305' (WireGuard's), 'aes-256-gcm', or 'none': a copy and a zero tag, for --insecure. */
export type AeadAlgorithm = NativeAeadAlgorithm;
export const DEFAULT_AEAD: AeadAlgorithm = 'chacha20-poly1305';

/**
 * One direction's transport key with its OpenSSL context. Create one per key
 * (sending or receiving) when a handshake completes; close() when the key retires.
 */
export class TransportCipher {
  private readonly key: NativeAeadKey;
  /** 'none': batches are copied in JavaScript (clear.ts), cheaper than a call into the addon. */
  private readonly clear: boolean;
  private closed = false;

  constructor(key: Uint8Array, readonly algorithm: AeadAlgorithm = DEFAULT_AEAD) {
    if (key.length !== KEY_SIZE) throw new EtherlinkError('ERR_INVALID_KEY', `transport key must be ${KEY_SIZE} bytes, got ${key.length}`);
    this.key = new (native().AeadKey)(algorithm, key);
    this.clear = algorithm === 'none';
  }

  /**
   * Seal `count` frames. For each i the caller has already written the 16-byte
   * transport header at dst[dstOffsets[i]]; the datagram that results is
   * dst[dstOffsets[i] .. + 16 + srcLengths[i] + 16). Throws only on bad bounds.
   */
  sealBatch(src: Uint8Array, srcOffsets: Uint32Array, srcLengths: Uint32Array, count: number, dst: Uint8Array, dstOffsets: Uint32Array): number {
    if (this.clear) {
      this.checkOpen();
      return sealClear(src, srcOffsets, srcLengths, count, dst, dstOffsets);
    }
    return this.key.sealBatch(src, srcOffsets, srcLengths, count, dst, dstOffsets);
  }

  /**
   * Open `count` datagrams into dst; results[i] = 1 if datagram i authenticated.
   * Plaintext i has srcLengths[i] - 32 bytes. Returns the number authentic.
   * Does not check replay: do that (ReplayWindow) for each authentic datagram after this.
   */
  openBatch(
    src: Uint8Array,
    srcOffsets: Uint32Array,
    srcLengths: Uint32Array,
    count: number,
    dst: Uint8Array,
    dstOffsets: Uint32Array,
    results: Uint8Array,
  ): number {
    if (this.clear) {
      this.checkOpen();
      return openClear(src, srcOffsets, srcLengths, count, dst, dstOffsets, results);
    }
    return this.key.openBatch(src, srcOffsets, srcLengths, count, dst, dstOffsets, results);
  }

  /** One message with an explicit nonce (RFC test vectors, slow paths). */
  sealOne(nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Buffer {
    checkNonce(nonce);
    return this.key.sealOne(nonce, ad, plaintext);
  }

  openOne(nonce: Uint8Array, ad: Uint8Array, sealed: Uint8Array): Buffer | null {
    checkNonce(nonce);
    return this.key.openOne(nonce, ad, sealed);
  }

  close(): void {
    this.closed = true;
    this.key.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new EtherlinkError('ERR_AEAD_CLOSED', 'AeadKey used after close()');
  }
}

function checkNonce(nonce: Uint8Array): void {
  if (nonce.length !== AEAD_NONCE_SIZE) throw new EtherlinkError('ERR_OUT_OF_RANGE', `nonce must be ${AEAD_NONCE_SIZE} bytes, got ${nonce.length}`);
}
