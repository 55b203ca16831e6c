// One handshake's outcome as the data path uses it: both directions' ciphers,
// the send counter, the receive replay window, and per-keypair scratch so that
// opening a batch allocates nothing.
import { DEFAULT_AEAD, TransportCipher, type AeadAlgorithm } from '../crypto/aead.js';
import { ReplayWindow } from './replay.js';
import type { TransportKeys } from './noise.js';
import { BATCH_SIZE } from '../core/frames.js';
import { MessageType, REPLAY_RING_BLOCKS } from './constants.js';

/** Bytes of a keypair's typed arrays, largest element first so every view is aligned. */
const KEYPAIR_STORE_BYTES = 4 * REPLAY_RING_BLOCKS + (4 + 4 + 4 + 2 + 1) * BATCH_SIZE;

export class Keypair {
  readonly send: TransportCipher;
  readonly recv: TransportCipher;
  readonly replay: ReplayWindow;
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly isInitiator: boolean;
  /** The responder may not send until the initiator's first transport message proves it has the keys. */
  confirmed: boolean;
  /** Byte 1 of what it seals: TRANSPORT_DATA (port with switch) or PAIR_DATA (port with port). */
  wireType: number = MessageType.TRANSPORT_DATA;
  /** Bytes 2..3 of what it seals: 0, or the member id a PAIR_DATA datagram is for. */
  route = 0;
  private sendCounter = 0;
  private isClosed = false;
  /** @internal receive scratch: datagram positions of this batch that use this keypair. */
  readonly rxOffsets: Uint32Array;
  readonly rxLengths: Uint32Array;
  readonly rxPlainOffsets: Uint32Array;
  readonly rxSlots: Uint16Array;
  readonly rxResults: Uint8Array;
  rxCount = 0;

  constructor(
    keys: TransportKeys,
    readonly createdAt: number,
    cipher: AeadAlgorithm = DEFAULT_AEAD,
  ) {
    // The replay ring and the scratch share one ArrayBuffer: each typed array
    // over 64 bytes would otherwise get its own off-heap store (~600 B of RSS
    // apiece), and a switch keeps a keypair or three per member.
    const store = new ArrayBuffer(KEYPAIR_STORE_BYTES);
    let at = 0;
    const take = <T>(make: (buf: ArrayBuffer, offset: number, length: number) => T, bytes: number, length: number): T => {
      const view = make(store, at, length);
      at += bytes * length;
      return view;
    };
    this.replay = new ReplayWindow(undefined, take((b, o, n) => new Uint32Array(b, o, n), 4, REPLAY_RING_BLOCKS));
    this.rxOffsets = take((b, o, n) => new Uint32Array(b, o, n), 4, BATCH_SIZE);
    this.rxLengths = take((b, o, n) => new Uint32Array(b, o, n), 4, BATCH_SIZE);
    this.rxPlainOffsets = take((b, o, n) => new Uint32Array(b, o, n), 4, BATCH_SIZE);
    this.rxSlots = take((b, o, n) => new Uint16Array(b, o, n), 2, BATCH_SIZE);
    this.rxResults = take((b, o, n) => new Uint8Array(b, o, n), 1, BATCH_SIZE);
    this.send = new TransportCipher(keys.sending, cipher);
    this.recv = new TransportCipher(keys.receiving, cipher);
    keys.sending.fill(0);
    keys.receiving.fill(0);
    this.localIndex = keys.localIndex;
    this.remoteIndex = keys.remoteIndex;
    this.isInitiator = keys.isInitiator;
    this.confirmed = keys.isInitiator;
  }

  nextCounter(): number {
    return this.sendCounter++;
  }

  get sent(): number {
    return this.sendCounter;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Free both ciphers; idempotent. A closed keypair is never used again. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.send.close();
    this.recv.close();
  }
}
