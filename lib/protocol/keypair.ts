// One handshake's outcome as the data path uses it: both directions' ciphers,
// the send counter, the receive replay window, and per-keypair scratch so that
// opening a batch allocates nothing.
import { DEFAULT_AEAD, TransportCipher, type AeadAlgorithm } from '../crypto/aead.js';
import { ReplayWindow } from './replay.js';
import type { TransportKeys } from './noise.js';
import { BATCH_SIZE } from '../core/frames.js';

export class Keypair {
  readonly send: TransportCipher;
  readonly recv: TransportCipher;
  readonly replay = new ReplayWindow();
  readonly localIndex: number;
  readonly remoteIndex: number;
  readonly isInitiator: boolean;
  /** The responder may not send until the initiator's first transport message proves it has the keys. */
  confirmed: boolean;
  private sendCounter = 0;
  private isClosed = false;
  /** @internal receive scratch: datagram positions of this batch that use this keypair. */
  readonly rxOffsets = new Uint32Array(BATCH_SIZE);
  readonly rxLengths = new Uint32Array(BATCH_SIZE);
  readonly rxPlainOffsets = new Uint32Array(BATCH_SIZE);
  readonly rxSlots = new Uint16Array(BATCH_SIZE);
  readonly rxResults = new Uint8Array(BATCH_SIZE);
  rxCount = 0;

  constructor(
    keys: TransportKeys,
    readonly createdAt: number,
    cipher: AeadAlgorithm = DEFAULT_AEAD,
  ) {
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
