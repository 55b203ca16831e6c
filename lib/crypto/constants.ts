// Sizes of the cryptographic primitives (lib/crypto/primitives.ts, the addon's
// AEAD). The protocol's own numbers are in lib/protocol/constants.ts.

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
