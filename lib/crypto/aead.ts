// Transport-message AEAD over whole batches: a typed wrapper of the addon's AeadKey
// (csrc/aead.cc). The 16-byte transport header is the associated data and its counter the nonce.
import { native, type NativeAeadAlgorithm, type NativeAeadKey } from '../io/native.js';
import { writeIndexedHeader } from '../protocol/wire.js';
import {
  AEAD_NONCE_SIZE,
  AEAD_TAG_SIZE,
  KEY_SIZE,
  PROTOCOL_VERSION_2,
  TRANSPORT_HEADER_SIZE,
  TRANSPORT_OVERHEAD,
  V2MessageType,
} from './constants.js';

export type AeadAlgorithm = NativeAeadAlgorithm;
/** WireGuard's cipher, fixed by protocol 2; AES-256-GCM is only an option (docs/PROTOCOL.md, "Deviations from WireGuard"; bench/aead.ts measures both). */
export const DEFAULT_AEAD: AeadAlgorithm = 'chacha20-poly1305';

/**
 * One direction's transport key with its OpenSSL contexts. Create one per key
 * (sending or receiving) when a handshake completes; close() when the key retires.
 */
export class TransportCipher {
  private readonly key: NativeAeadKey;

  constructor(key: Uint8Array, readonly algorithm: AeadAlgorithm = DEFAULT_AEAD) {
    if (key.length !== KEY_SIZE) {
      throw Object.assign(new RangeError(`transport key must be ${KEY_SIZE} bytes, got ${key.length}`), { code: 'ERR_INVALID_KEY' });
    }
    this.key = new (native().AeadKey)(algorithm, key);
  }

  /**
   * Seal `count` frames. For each i the caller has already written the 16-byte
   * header (writeTransportHeader) at dst[dstOffsets[i]]; the datagram that results is
   * dst[dstOffsets[i] .. + sealedLength(srcLengths[i])). Throws only on bad bounds.
   */
  sealBatch(
    src: Uint8Array,
    srcOffsets: Uint32Array,
    srcLengths: Uint32Array,
    count: number,
    dst: Uint8Array,
    dstOffsets: Uint32Array,
  ): number {
    return this.key.sealBatch(src, srcOffsets, srcLengths, count, dst, dstOffsets);
  }

  /**
   * Open `count` datagrams into dst; results[i] = 1 if datagram i authenticated.
   * Plaintext i has openedLength(srcLengths[i]) bytes. Returns the number authentic.
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
    return this.key.openBatch(src, srcOffsets, srcLengths, count, dst, dstOffsets, results);
  }

  /** One message with an explicit nonce (RFC test vectors, slow paths). */
  sealOne(nonce: Uint8Array, ad: Uint8Array, plaintext: Uint8Array): Buffer {
    if (nonce.length !== AEAD_NONCE_SIZE) throw new RangeError('nonce must be 12 bytes');
    return this.key.sealOne(nonce, ad, plaintext);
  }

  openOne(nonce: Uint8Array, ad: Uint8Array, sealed: Uint8Array): Buffer | null {
    if (nonce.length !== AEAD_NONCE_SIZE) throw new RangeError('nonce must be 12 bytes');
    return this.key.openOne(nonce, ad, sealed);
  }

  close(): void {
    this.key.close();
  }
}

/**
 * Write the 16-byte v2 transport header at buf[off..]: version 2, type
 * TRANSPORT_DATA, then receiver index and counter as in v1's DATA header.
 * Hot path: not validated, no allocation.
 */
export function writeTransportHeader(buf: Uint8Array, off: number, receiverIndex: number, counter: number): number {
  return writeIndexedHeader(buf, off, PROTOCOL_VERSION_2, V2MessageType.TRANSPORT_DATA, receiverIndex, counter);
}

/** Datagram length of a sealed frame of `frameLength` bytes: header + frame + tag. */
export function sealedLength(frameLength: number): number {
  return frameLength + TRANSPORT_OVERHEAD;
}

/** Plaintext length inside a datagram of `datagramLength` bytes (negative = too short to be one). */
export function openedLength(datagramLength: number): number {
  return datagramLength - TRANSPORT_OVERHEAD;
}

export { AEAD_TAG_SIZE, TRANSPORT_HEADER_SIZE };
