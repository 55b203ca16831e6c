// Every timer, limit and size of EtherLink v2's cryptographic layer, named as in the
// WireGuard paper (section 6) and wireguard-go's device/constants.go. docs/PROTOCOL.md (version 2) explains each.

// ---------------------------------------------------------------- message counters

/**
 * What WireGuard uses, as bigints because they exceed 2^53: rekey after 2^60
 * messages, refuse after 2^64 - 2^13 - 1 (the 2^13 keeps the replay window
 * meaningful right up to the limit).
 */
export const WIREGUARD_REKEY_AFTER_MESSAGES = 2n ** 60n;
export const WIREGUARD_REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n - 1n;

/**
 * EtherLink keeps counters as JS numbers, exact below 2^53, so the hard limit is
 * moved down to 2^53 with WireGuard's same 2^13 + 1 margin. Unreachable in
 * practice: REKEY_AFTER_TIME rekeys every 2 minutes (10 M frames/s for 120 s is 2^30).
 */
export const REJECT_AFTER_MESSAGES = 2 ** 53 - 2 ** 13 - 1;
/** WireGuard's 2^60 : 2^64 ratio (1/16) applied to our 2^53 ceiling. */
export const REKEY_AFTER_MESSAGES = 2 ** 49;

// ---------------------------------------------------------------- timers (WireGuard's values)

/** The initiator starts a new handshake when the current keys are this old and it sends. */
export const REKEY_AFTER_TIME_MS = 120_000;
/** Keys older than this are never used for sending or receiving. */
export const REJECT_AFTER_TIME_MS = 180_000;
/** Keep retrying a handshake for this long, then give up until there is traffic again. */
export const REKEY_ATTEMPT_TIME_MS = 90_000;
/** Retransmit an unanswered initiation after this long (plus jitter). */
export const REKEY_TIMEOUT_MS = 5_000;
/** Up to this much random jitter is added to REKEY_TIMEOUT (wireguard-go: 334 ms). */
export const REKEY_TIMEOUT_JITTER_MAX_MS = 334;
/** Send an empty (keepalive) transport message after receiving data and sending nothing for this long. */
export const KEEPALIVE_TIMEOUT_MS = 10_000;
/** The responder's cookie secret rotates, and an initiator's stored cookie expires, after this long. */
export const COOKIE_REFRESH_TIME_MS = 120_000;
/** A responder consumes at most one initiation per initiator per this interval (50 per second). */
export const HANDSHAKE_INITIATION_RATE_MS = 20;
/** Transport plaintext is zero-padded to a multiple of this (WireGuard; the lead decides if frames get it). */
export const PADDING_MULTIPLE = 16;

// ---------------------------------------------------------------- sizes

export const KEY_SIZE = 32;
export const HASH_SIZE = 32;
export const AEAD_TAG_SIZE = 16;
/** ChaCha20-Poly1305 nonce: 4 zero bytes then the 64-bit little-endian counter (RFC 8439 constant || IV). */
export const AEAD_NONCE_SIZE = 12;
/** mac1/mac2/cookie: keyed BLAKE2s with 16-byte output. */
export const MAC_SIZE = 16;
export const COOKIE_SIZE = 16;
/** XChaCha20-Poly1305 nonce of the cookie reply. */
export const XAEAD_NONCE_SIZE = 24;
/** TAI64N: 8-byte big-endian TAI seconds + 4-byte big-endian nanoseconds. */
export const TIMESTAMP_SIZE = 12;

// ---------------------------------------------------------------- replay window

/** Bits per block of the replay bitmap (JS bitwise operations are 32-bit). */
export const REPLAY_BLOCK_BITS = 32;
/** Blocks in the ring: 256 x 32 = 8192 bits, like wireguard-go's 128 x 64. */
export const REPLAY_RING_BLOCKS = 256;
/**
 * Counters this far behind the highest seen are still accepted once: the ring
 * minus one block, which is being recycled (RFC 6479). 8160 here; wireguard-go 8128.
 */
export const REPLAY_WINDOW_SIZE = (REPLAY_RING_BLOCKS - 1) * REPLAY_BLOCK_BITS;

// ---------------------------------------------------------------- Noise and WireGuard identifiers

/** The Noise protocol name: WireGuard's handshake exactly. */
export const NOISE_CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
/**
 * The Noise prologue (WireGuard's "Identifier", hashed in right after the
 * construction). Differs from WireGuard's "WireGuard v1 zx2c4 Jason@zx2c4.com",
 * so no EtherLink handshake transcript can ever be a WireGuard one or vice versa.
 */
export const ETHERLINK_IDENTIFIER = 'EtherLink v2 etherlink.dev';

/** Transport ciphers a deployment may choose; both ends must agree. */
export const TRANSPORT_CIPHERS = ['chacha20-poly1305', 'aes-256-gcm'] as const;
export type TransportCipherName = (typeof TRANSPORT_CIPHERS)[number];

/**
 * The prologue hashed into every handshake. The transport cipher is part of
 * it, so a port and a switch configured with different ciphers fail the
 * handshake itself instead of exchanging undecryptable data. The default
 * cipher keeps the plain identifier.
 */
export function handshakePrologue(cipher: TransportCipherName = 'chacha20-poly1305'): Buffer {
  return Buffer.from(cipher === 'chacha20-poly1305' ? ETHERLINK_IDENTIFIER : `${ETHERLINK_IDENTIFIER} ${cipher}`);
}
/** Labels of the mac1 key and cookie key derivations: WireGuard's. */
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';
/** TAI64 label of the Unix epoch: 2^62 + 10 leap seconds (as WireGuard's tai64n). */
export const TAI64_EPOCH = 0x400000000000000an;
/** Nanoseconds are rounded down to 2^24 ns (~16.8 ms) so the timestamp doesn't leak a fine clock (wireguard-go). */
export const TAI64N_WHITENER_MASK = 0x00ff_ffff;

// ---------------------------------------------------------------- v2 message layouts

/** Byte 0 of every v2 datagram. */
export const PROTOCOL_VERSION_2 = 2;

/**
 * v2 message types: 0x2N mirrors WireGuard's type N, and none collides with
 * v1's 1..6 or the everlasting 0xFF (VERSION_UNSUPPORTED).
 */
export const V2MessageType = {
  HANDSHAKE_INITIATION: 0x21,
  HANDSHAKE_RESPONSE: 0x22,
  COOKIE_REPLY: 0x23,
  TRANSPORT_DATA: 0x24,
} as const;
export type V2MessageType = (typeof V2MessageType)[keyof typeof V2MessageType];

/** Every datagram: version, type, 2 reserved bytes (zero), in place of WireGuard's type + 3 reserved. */
export const V2_PREFIX_SIZE = 4;

export const InitiationOffset = {
  SENDER_INDEX: 4,
  EPHEMERAL: 8,
  STATIC: 40, // 32 + 16 tag
  TIMESTAMP: 88, // 12 + 16 tag
  MAC1: 116,
  MAC2: 132,
} as const;
export const INITIATION_SIZE = 148;

export const ResponseOffset = {
  SENDER_INDEX: 4,
  RECEIVER_INDEX: 8,
  EPHEMERAL: 12,
  EMPTY: 44, // 0 + 16 tag
  MAC1: 60,
  MAC2: 76,
} as const;
export const RESPONSE_SIZE = 92;

export const CookieReplyOffset = {
  RECEIVER_INDEX: 4,
  NONCE: 8,
  COOKIE: 32, // 16 + 16 tag
} as const;
export const COOKIE_REPLY_SIZE = 64;

export const TransportOffset = {
  RECEIVER_INDEX: 4,
  COUNTER: 8,
  CIPHERTEXT: 16,
} as const;
/** The v1 DATA header size, kept: it is also the associated data of the AEAD. */
export const TRANSPORT_HEADER_SIZE = 16;
/** Header + tag: an empty transport message (a keepalive) is 32 bytes. */
export const TRANSPORT_OVERHEAD = TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE;
