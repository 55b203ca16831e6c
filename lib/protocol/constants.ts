// Every number of the EtherLink protocol in one place: the wire layouts and
// identifiers, WireGuard's timers and limits, and this implementation's own
// limits, apart. docs/PROTOCOL.md explains each; change both together.
import { AEAD_TAG_SIZE } from '../crypto/constants.js';

// ================================================================ the protocol

// ---------------------------------------------------------------- version and message types

/** Byte 0 of every datagram. There is one version; 0xff below is the answer to any other. */
export const PROTOCOL_VERSION = 2;
/** The UDP port a switch listens on unless told otherwise. */
export const DEFAULT_SWITCH_PORT = 9999;

/**
 * Byte 1 of every datagram: 0x2N mirrors WireGuard's type N; 0x25 and 0x26 are
 * unauthenticated hints of ours; 0xff keeps its layout in every version.
 */
export const MessageType = {
  HANDSHAKE_INITIATION: 0x21,
  HANDSHAKE_RESPONSE: 0x22,
  COOKIE_REPLY: 0x23,
  TRANSPORT_DATA: 0x24,
  /** "I know no session with that receiver index": the switch restarted. */
  SESSION_UNKNOWN: 0x25,
  /** "I will not take this handshake, and why": --insecure on one side only, or another cipher. */
  HANDSHAKE_REFUSED: 0x26,
  /**
   * Transport data of a pair session, sealed by one port for another: the
   * layout of TRANSPORT_DATA, with the destination member id in bytes 2..3
   * (authenticated: the header is the AEAD's associated data). The switch
   * relays it unopened to that member.
   */
  PAIR_DATA: 0x27,
  /**
   * Transport data of a port's session with its switch whose plaintext is a
   * control message of any length (kind u8, body): the directory, relayed pair
   * handshakes, MAC claims. Same keys, counter and replay window as TRANSPORT_DATA.
   */
  CONTROL_DATA: 0x28,
  /**
   * "End-to-end data came from an address I know no member at": the port
   * moved (a NAT rebinding). Unauthenticated, like SESSION_UNKNOWN: it can
   * only make the port ping (authenticated) sooner, and that ping moves its
   * endpoint and its relay route.
   */
  ENDPOINT_UNKNOWN: 0x29,
  /**
   * Port -> the switch's reflector socket (another UDP port of the switch):
   * prefix, 8-byte transaction id, zero padding to REFLECT_SIZE (as large as
   * the answer: no amplification). Unauthenticated, like STUN: a wrong answer
   * can only mislabel the port's NAT.
   */
  REFLECT_REQUEST: 0x2a,
  /** Reflector -> port: prefix, the transaction id, the source address slot it saw (18 bytes), 2 zero bytes. */
  REFLECT_REPLY: 0x2b,
  /**
   * Port -> switch over UDP while the port's session runs over a stream (TCP,
   * WebSocket): prefix, the switch's receiver index of the port's current
   * keys u32, sequence u32, zero padding to UDP_PROBE_SIZE. "Would UDP work
   * again?" Unauthenticated, but answered only for a live index, within a
   * budget, and with an authenticated PROBE_ACK (control inside transport
   * data) no larger than the probe, sent back to where the probe came from.
   * It moves nothing: the member's endpoint stays on the stream until the
   * port sends its traffic over UDP again.
   */
  UDP_PROBE: 0x2c,
  /** "I don't speak that version": layout fixed forever. */
  VERSION_UNSUPPORTED: 0xff,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

// ---------------------------------------------------------------- layouts (byte offsets from the start of the datagram)

/** Every datagram: version, type, 2 reserved bytes (zero), in place of WireGuard's type + 3 reserved. */
export const PREFIX_SIZE = 4;

export const InitiationOffset = {
  SENDER_INDEX: 4,
  EPHEMERAL: 8,
  STATIC: 40, // 32 + 16 tag
  /** The encrypted payload: a 12-byte TAI64N timestamp, then the extensions, then a 16-byte tag. */
  TIMESTAMP: 88,
  /** Without extensions; mac1 and mac2 always end the message, so extensions move them by their length. */
  MAC1: 116,
  MAC2: 132,
} as const;
/** mac1 and mac2 (16 bytes each) end every handshake message. */
export const MACS_SIZE = 32;
/** An initiation without extensions: WireGuard's 148 bytes. */
export const INITIATION_SIZE = 148;
/** Extension bytes an initiation may carry (type, length, value each). */
export const EXTENSIONS_MAX_SIZE = 64;
export const INITIATION_MAX_SIZE = INITIATION_SIZE + EXTENSIONS_MAX_SIZE;

/** Initiation extensions: type u8, length u8, value. Unknown types are skipped. */
export const Extension = {
  /** UTF-8, printable, at most NAME_MAX_BYTES: how the port calls itself in the switch's logs. */
  NAME: 1,
  /**
   * No value: the port runs pair sessions (end to end). Only such members get
   * directory entries and relayed handshakes; any other is switched hop by hop.
   */
  PAIRS: 2,
  /**
   * An invite's id (INVITE_ID_SIZE) and this key's proof of its secret
   * (INVITE_PROOF_SIZE): a key not in the allow file asks to be added
   * (lib/daemon/invites.ts). The secret itself never travels.
   */
  INVITE: 3,
} as const;

/** Bytes of an invite's id, its secret, and the proof an initiation carries. */
export const INVITE_ID_SIZE = 8;
export const INVITE_SECRET_SIZE = 16;
export const INVITE_PROOF_SIZE = 16;
/** Largest port name an initiation carries (it is for logs and status only). */
export const NAME_MAX_BYTES = 32;

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
/** Prefix, receiver index, counter: the associated data of the AEAD, its counter the nonce. */
export const TRANSPORT_HEADER_SIZE = 16;
/** Header + tag: an empty transport message is 32 bytes. The tag slot is there (zero) with cipher 'none' too. */
export const TRANSPORT_OVERHEAD = TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE;

/** PAIR_DATA: bytes 2..3 of the prefix, big-endian: the member the datagram is for (1..MEMBER_ID_MAX). */
export const PAIR_ROUTE_OFFSET = 2;
/** Member ids the switch hands out: u16, never 0. */
export const MEMBER_ID_MAX = 0xffff;

/** REFLECT_REQUEST and REFLECT_REPLY: prefix, transaction id (8), address slot (16 + port 2), 2 zero bytes. */
export const REFLECT_SIZE = 32;
/** UDP_PROBE: prefix (4), receiver index (4), sequence (4), padding: larger than its sealed PROBE_ACK answer (16 + 5 + 16). */
export const UDP_PROBE_SIZE = 64;
export const REFLECT_TXID_OFFSET = 4;
export const REFLECT_ADDR_OFFSET = 12;

/** ENDPOINT_UNKNOWN: the prefix, then the receiver index of the PAIR_DATA it answers (so only its sender can match it). */
export const ENDPOINT_UNKNOWN_SIZE = 8;

/** SESSION_UNKNOWN: prefix, then the receiver index the switch did not know. Smaller than any transport message. */
export const SESSION_UNKNOWN_SIZE = 8;

export const RefusedOffset = {
  /** The sender index of the refused initiation, so the port can match it to its attempt. */
  RECEIVER_INDEX: 4,
  REASON: 8,
} as const;
/** HANDSHAKE_REFUSED: prefix, receiver index, reason u8, 3 reserved. Far smaller than the initiation it answers. */
export const HANDSHAKE_REFUSED_SIZE = 12;
export const RefusedReason = {
  /** This switch requires keys; the initiation was for the well-known --insecure key. */
  KEYS_REQUIRED: 1,
  /** This switch runs --insecure; the initiation was for another key. */
  INSECURE_SWITCH: 2,
  /** mac1 matched this switch's key but the handshake does not decrypt: another --cipher (or tampering). */
  CIPHER_MISMATCH: 3,
  /** The key is not in the allow file and its invite is unknown to this switch (never made, revoked, or a wrong secret). */
  INVITE_UNKNOWN: 4,
  /** The invite expired. */
  INVITE_EXPIRED: 5,
  /** The invite was used as often as it may be. */
  INVITE_USED: 6,
} as const;
export type RefusedReason = (typeof RefusedReason)[keyof typeof RefusedReason];

export const VersionUnsupportedOffset = {
  SENDER_VERSION: 0,
  TYPE: 1,
  LOWEST: 2,
  HIGHEST: 3,
} as const;
export const VERSION_UNSUPPORTED_SIZE = 4;

// ---------------------------------------------------------------- control messages inside transport data

/**
 * A plaintext shorter than an Ethernet header can never be a frame, so
 * lengths 1..13 carry control; an empty one is a bare keepalive.
 */
export const Control = {
  /** Goodbye: the sender closes the session (port leaving, switch shutting down or revoking). */
  LEAVE: 1,
  /** u32 sequence, u8 flags; answered by PONG with the same sequence. Keeps NAT mappings open, measures RTT, carries the link state. */
  PING: 2,
  PONG: 3,
  /** Switch -> port after key confirmation: keepalive interval (u16 s) and port timeout (u16 s). */
  PARAMS: 4,
  /** Switch -> port, over UDP to where a UDP_PROBE came from: kind, the probe's sequence u32. */
  PROBE_ACK: 5,
} as const;
/** PROBE_ACK: kind, sequence u32. */
export const PROBE_ACK_SIZE = 5;
export const CONTROL_MAX_SIZE = 13;
/** PING and PONG: kind, sequence u32, flags u8. */
export const PING_SIZE = 6;
export const PingFlags = {
  /** The port's device is down (admin down or no carrier): the switch withdraws its MACs. */
  LINK_DOWN: 0x01,
} as const;
export const PARAMS_SIZE = 5;
/** NOT_HERE (pair sessions only): kind, MAC (6), VLAN u16. */
export const NOT_HERE_SIZE = 9;
/** Short control kinds of pair sessions (PAIR_DATA plaintext of 1..13 bytes): LEAVE, and this. */
export const PairControl = {
  LEAVE: 1,
  /** "That destination MAC is not behind me (any more)": the sender goes back through the switch at once. */
  NOT_HERE: 5,
  /**
   * "Answer this on the address it came from": a direct path's hole punch and
   * heartbeat. Not a short control message but a frame-sized one (wire.ts
   * encodeProbeFrame), so a path that cannot carry full frames never answers.
   */
  PROBE: 6,
  /** The probe's answer, as large, sent to the address the probe came from: proves that path both ways. */
  PROBE_REPLY: 7,
} as const;
/** EtherType of a probe frame (IEEE 802 local experimental 1): never written to a device. */
export const PROBE_ETHERTYPE = 0x88b5;
/** A probe frame: zero MACs (12), EtherType (2), kind (1), id (4). Padded up to the largest frame. */
export const PROBE_FRAME_MIN_SIZE = 19;

/**
 * Kinds of CONTROL_DATA plaintext (byte 0), port <-> switch only. Port to
 * switch 0x1N, switch to port 0x2N. Unknown kinds are counted and skipped.
 */
export const LongControl = {
  /** Port -> switch: dst u16, then a handshake message for that member's port. */
  PAIR_SEND: 0x10,
  /** Port -> switch: count u8, then count x (MAC 6, VLAN u16): source MACs this port used on pair sessions lately. */
  MAC_CLAIM: 0x11,
  /**
   * Port -> switch: flags u8 (EndpointFlags), NAT mapping u8 (NatMapping),
   * count u8, count x address slot (18: address 16, port 2): the port's own
   * addresses (its LAN side) for direct paths.
   */
  ENDPOINTS: 0x12,
  /** Port -> switch: member id u16: "introduce us" — both sides get CANDIDATES of the other, at once. */
  RENDEZVOUS: 0x13,
  /** Port -> switch: member id u16, path u8 (PathKind), reason length u8, reason (UTF-8): how this port reaches that member now. */
  PATH_REPORT: 0x14,
  /** Port -> switch: static public key (32): "which member id has this key now?" (after a rejoin): answered with PEER, or not at all. */
  PEER_QUERY: 0x15,
  /**
   * Port -> switch: u64 bytes sent and u64 bytes received on direct paths
   * since the port started (monotonic): traffic the switch no longer sees,
   * for its status and charts. Sent every TRAFFIC_REPORT_INTERVAL_MS while it
   * changes, every TRAFFIC_REPORT_REFRESH_MS when not (a report may be lost),
   * never while both are 0.
   */
  TRAFFIC_REPORT: 0x16,
  /** Switch -> port: src u16, static public key (32), then a handshake message from that member's port. */
  PAIR_RECV: 0x20,
  /**
   * Switch -> port: the directory entry of one member: id u16, flags u8,
   * static public key (32), name length u8, name, count u16, count x (MAC 6,
   * VLAN u16). A member's MACs may span several messages: the first has RESET.
   */
  PEER: 0x21,
  /**
   * Switch -> port: member id u16, flags u8 (EndpointFlags), NAT mapping u8,
   * the member's address as the switch sees it (slot, 18), count u8, count x
   * slot (18): its own addresses. Both ports of a RENDEZVOUS get one at once,
   * and start probing.
   */
  CANDIDATES: 0x22,
  /** Switch -> port: the port's own address as the switch sees it (slot, 18), the reflector's UDP port u16 (0: none). */
  REFLECTED: 0x23,
  /**
   * Switch -> port, once after joining: the network its key belongs to
   * (length u8, UTF-8, at most NAME_MAX_BYTES) and its VLAN mode as text
   * (length u8, ASCII, at most ASSIGNMENT_MODE_MAX_BYTES: 'transparent',
   * 'access 10', 'trunk 10,20 pvid 1'). For status: the switch enforces both.
   */
  ASSIGNMENT: 0x24,
} as const;
/** Longest VLAN mode text in ASSIGNMENT. */
export const ASSIGNMENT_MODE_MAX_BYTES = 200;
export const EndpointFlags = {
  /** The port runs with --no-direct: it never sends or answers on direct paths. */
  NO_DIRECT: 0x01,
} as const;
/** How a port's NAT maps one local socket to public ports (RFC 4787 terms), as measured against the switch and its reflector. */
export const NatMapping = {
  UNKNOWN: 0,
  /** No NAT: the switch sees one of the port's own addresses. */
  NONE: 1,
  /** The same public port for every destination: hole punching works. */
  ENDPOINT_INDEPENDENT: 2,
  /** Another public port per destination ("symmetric"): only the far side's NAT can be punched through. */
  ENDPOINT_DEPENDENT: 3,
} as const;
export type NatMapping = (typeof NatMapping)[keyof typeof NatMapping];
export const NAT_MAPPING_NAMES = ['unknown', 'none', 'endpoint-independent', 'endpoint-dependent'] as const;
export const PathKind = {
  RELAYED: 0,
  DIRECT: 1,
} as const;
/** One address in ENDPOINTS and CANDIDATES: IPv6 (or IPv4-mapped) address and port, as the first 18 bytes of an address slot. */
export const ENDPOINT_RECORD_SIZE = 18;
/** Own addresses a port reports, and the switch passes on. */
export const LOCAL_ENDPOINTS_MAX = 8;
/** Longest reason text of a PATH_REPORT. */
export const PATH_REASON_MAX_BYTES = 96;
/** How often a port reports its direct-path traffic (TRAFFIC_REPORT), while it changes: the live charts' second. */
export const TRAFFIC_REPORT_INTERVAL_MS = 1_000;
/** The same report again when nothing changed, in case the last was lost. */
export const TRAFFIC_REPORT_REFRESH_MS = 10_000;
export const PeerFlags = {
  /** This message starts the member's MAC list: forget the MACs known before. */
  RESET: 0x01,
  /** The member left or was revoked: drop its pair sessions and its MACs (nothing follows the flags). */
  GONE: 0x02,
  /** This entry is the receiving port itself: its MACs are the ones it may send from on pair sessions. */
  SELF: 0x04,
} as const;
/** One MAC in MAC_CLAIM and PEER: 6 bytes of address, VLAN id u16. */
export const MAC_RECORD_SIZE = 8;
/** MACs per PEER or MAC_CLAIM message: 1 KiB of records keeps every control datagram far below the path MTU. */
export const MACS_PER_MESSAGE = 128;

// ---------------------------------------------------------------- identifiers

/** The Noise protocol name: WireGuard's handshake exactly. */
export const NOISE_CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
/**
 * The Noise prologue (WireGuard's "Identifier"). Differs from WireGuard's, so
 * no EtherLink handshake transcript can ever be a WireGuard one or vice versa.
 */
export const ETHERLINK_IDENTIFIER = 'EtherLink v2 etherlink.dev';
/** The prologue of pair handshakes (port with port), so no pair transcript can pass for a port-switch one. */
export const PAIR_IDENTIFIER = 'EtherLink v2 pair etherlink.dev';

/** Transport ciphers; both ends must agree. 'none' is --insecure: the frames travel in clear. */
export const TRANSPORT_CIPHERS = ['chacha20-poly1305', 'aes-256-gcm', 'none'] as const;
/** A transport cipher by name. */
export type TransportCipherName = (typeof TRANSPORT_CIPHERS)[number];
/** WireGuard's cipher; AES-256-GCM is an option (docs/PROTOCOL.md, "Deviations from WireGuard"). */
export const DEFAULT_CIPHER: TransportCipherName = 'chacha20-poly1305';

/**
 * The prologue hashed into every handshake. The transport cipher is part of
 * it, so a port and a switch with different ciphers (--insecure on one side
 * only among them) fail the handshake itself instead of exchanging
 * undecryptable data. The default cipher keeps the plain identifier.
 */
export function handshakePrologue(cipher: TransportCipherName = DEFAULT_CIPHER, identifier: string = ETHERLINK_IDENTIFIER): Buffer {
  return Buffer.from(cipher === DEFAULT_CIPHER ? identifier : `${identifier} ${cipher}`);
}

/**
 * The seed of the published switch key of --insecure: BLAKE2s-256 of this text
 * is the private key every insecure switch uses, so that a port needs no
 * --switch-key to find one. It protects nothing, and says so.
 */
export const INSECURE_SWITCH_KEY_SEED = 'EtherLink v2 insecure switch: this key is public';

/** Labels of the mac1 key and cookie key derivations: WireGuard's. */
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';
/** TAI64 label of the Unix epoch: 2^62 + 10 leap seconds (as WireGuard's tai64n). */
export const TAI64_EPOCH = 0x400000000000000an;
/** Nanoseconds are rounded down to 2^24 ns (~16.8 ms) so the timestamp doesn't leak a fine clock (wireguard-go). */
export const TAI64N_WHITENER_MASK = 0x00ff_ffff;
/** TAI64N: 8-byte big-endian TAI seconds + 4-byte big-endian nanoseconds. */
export const TIMESTAMP_SIZE = 12;

// ---------------------------------------------------------------- message counters

/**
 * WireGuard's limits, as bigints because they exceed 2^53: rekey after 2^60
 * messages, refuse after 2^64 - 2^13 - 1.
 */
export const WIREGUARD_REKEY_AFTER_MESSAGES = 2n ** 60n;
export const WIREGUARD_REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n - 1n;
/**
 * Counters are JS numbers, exact below 2^53, so the hard limit is moved down to
 * 2^53 with WireGuard's 2^13 + 1 margin. Unreachable in practice: keys are
 * replaced every 2 minutes (10 M frames/s for 120 s is 2^30).
 */
export const REJECT_AFTER_MESSAGES = 2 ** 53 - 2 ** 13 - 1;
/** WireGuard's 2^60 : 2^64 ratio (1/16) applied to our 2^53 ceiling. */
export const REKEY_AFTER_MESSAGES = 2 ** 49;

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

// ---------------------------------------------------------------- timers (WireGuard's values)

/** The initiator starts a new handshake when the current keys are this old. */
export const REKEY_AFTER_TIME_MS = 120_000;
/** Keys older than this are never used for sending or receiving. */
export const REJECT_AFTER_TIME_MS = 180_000;
/** WireGuard retransmits an unanswered initiation after this long; here it scales the confirm timeout (ports retry on REJOIN_BACKOFF). */
export const REKEY_TIMEOUT_MS = 5_000;
/** The responder's cookie secret rotates, and an initiator's stored cookie expires, after this long. */
export const COOKIE_REFRESH_TIME_MS = 120_000;
/** A responder consumes at most one initiation per initiator per this interval (50 per second). */
export const HANDSHAKE_INITIATION_RATE_MS = 20;

// ---------------------------------------------------------------- timers (EtherLink's)

/** A port pings this often (the switch tells it in PARAMS). */
export const KEEPALIVE_INTERVAL_DEFAULT_S = 10;
/** Bounds a port applies to the interval PARAMS announces. */
export const KEEPALIVE_INTERVAL_MIN_S = 1;
export const KEEPALIVE_INTERVAL_MAX_S = 600;
/** The switch drops a port it has not heard from for this long. */
export const PORT_TIMEOUT_DEFAULT_S = 30;
/** The port timeout must cover at least this many keepalive intervals. */
export const PORT_TIMEOUT_MIN_INTERVALS = 2;
/** A port declares the switch dead when this many keepalives in a row went unanswered. */
export const DEAD_AFTER_MISSED_KEEPALIVES = 3;
/** Handshake retries and rejoins: first delay, doubling up to the maximum. */
export const REJOIN_BACKOFF_INITIAL_MS = 500;
export const REJOIN_BACKOFF_MAX_MS = 10_000;
/** Each delay is shortened by up to this fraction, at random, so ports don't rejoin in lockstep. */
export const REJOIN_BACKOFF_JITTER = 0.25;
/** How often the switch runs its timers (expiry of silent ports, old keys, unconfirmed handshakes). */
export const SWITCH_TICK_INTERVAL_MS = 1000;
/** A responder keypair the port never used is dropped after this (and the reason logged). */
export const CONFIRM_TIMEOUT_MS = 3 * REKEY_TIMEOUT_MS;
/** A SESSION_UNKNOWN hint starts at most one handshake per this interval (it is unauthenticated). */
export const HINT_HANDSHAKE_INTERVAL_MS = 1000;
/** A changed link state is pinged again this often until the switch answers. */
export const LINK_STATE_RETRY_MS = 250;

// ================================================================ this implementation's limits

/** Ports a switch admits by default. */
export const MAX_PORTS_DEFAULT = 1024;
/** Unsolicited replies (VERSION_UNSUPPORTED, SESSION_UNKNOWN, HANDSHAKE_REFUSED) per second, and the burst: no reflection. */
export const REPLY_BUDGET_PER_SECOND = 10;
export const REPLY_BUDGET_BURST = 10;
/** Log lines about unauthenticated input per second: a flood of junk can't flood the log. */
export const LOG_BUDGET_PER_SECOND = 5;
/** Handshakes per second above which initiations must carry a valid cookie (mac2). */
export const UNDER_LOAD_HANDSHAKES_PER_S = 64;
/** Initiations each source address may have processed per second (WireGuard: 20/s, burst 5). */
export const HANDSHAKES_PER_SOURCE_PER_S = 20;
export const HANDSHAKE_SOURCE_BURST = 5;
/** Sources the handshake rate limiter remembers; the least recently seen is forgotten first. */
export const RATE_LIMIT_TABLE_MAX = 8192;
/** Unconfirmed handshakes held at once, across all ports. */
export const MAX_PENDING_HANDSHAKES = 1024;
/** Attempts without any answer before the port says what is probably misconfigured. */
export const SILENT_ATTEMPTS_BEFORE_HINT = 4;
/** Pings a port remembers for RTT while waiting for their pongs. */
export const PINGS_OUTSTANDING_MAX = 8;

// ---------------------------------------------------------------- pair sessions (end to end)

/** Pair sessions a port holds at once; the least recently used goes first (docs/PROTOCOL.md, "Pair sessions"). */
export const MAX_PAIR_SESSIONS_DEFAULT = 256;
/** A pair session nobody sent or received on for this long is closed (its keys would expire at REJECT_AFTER_TIME anyway). */
export const PAIR_IDLE_MS = 120_000;
/** An unanswered pair initiation is retried after this long, at most PAIR_HANDSHAKE_ATTEMPTS times, then the pair waits for new traffic. */
export const PAIR_HANDSHAKE_RETRY_MS = 1_000;
export const PAIR_HANDSHAKE_ATTEMPTS = 5;
/** After the attempts ran out, traffic to the peer starts a new series no sooner than this. */
export const PAIR_HANDSHAKE_COOLDOWN_MS = 10_000;
/**
 * The responder of a pair rekeys this far into the gap between REKEY_AFTER
 * and REJECT_AFTER (150 s by default): later than the initiator, so both
 * rarely start at once, yet before its keys die — after a simultaneous first
 * contact both sides may hold responder keys (WireGuard's rule is the same
 * shape: REJECT - KEEPALIVE - REKEY_TIMEOUT).
 */
export const PAIR_RESPONDER_REKEY_FRACTION = 0.5;
/** NOT_HERE notices a port sends per second (they answer authenticated frames, but a confused peer could send many). */
export const NOT_HERE_PER_SECOND = 20;
/**
 * How often a port reports the source MACs it used on pair sessions
 * (MAC_CLAIM): the switch's entries must not age out, and the move hold
 * (3 s by default) must still see the owner as active, so this is below it.
 */
export const MAC_CLAIM_INTERVAL_MS = 1_000;
/** Source MACs a port remembers for its claims; beyond this the oldest are forgotten (the switch caps per port far lower). */
export const LOCAL_MACS_MAX = 4096;
/** Pair datagrams without a route that the switch answers with PEER GONE, per second. */
export const GONE_REPLIES_PER_SECOND = 20;

// ---------------------------------------------------------------- direct paths (docs/PROTOCOL.md, "Direct paths")

/**
 * While frames flow on a pair, its direct path is probed this often (the
 * heartbeat). A missed answer puts traffic on the relay as well within
 * PATH_HEARTBEAT_MS + PATH_DOUBT_GRACE_MS: under the 1 s the no-blackout rule
 * allows (Tailscale's magicsock heartbeats every 3 s).
 */
export const PATH_HEARTBEAT_MS = 500;
/** A probe unanswered for this long (or 2 RTTs, whichever is more) puts the path in doubt: frames go both ways. */
export const PATH_DOUBT_GRACE_MS = 200;
/** A direct path with no pong for this long is dropped: relay only (magicsock trusts for 6.5 s). */
export const PATH_TRUST_MS = 3_000;
/** While relayed and active, every candidate is probed again this often: a path that answers again is taken back within seconds. */
export const PATH_RETRY_MS = 5_000;
/** While relayed and active, the switch is asked to introduce the pair again this often (mappings may have changed). */
export const PATH_REDISCOVER_MS = 30_000;
/** No frames on the pair for this long: heartbeats and retries stop (magicsock: 45 s). The next frame probes at once. */
export const PATH_IDLE_MS = 45_000;
/** RENDEZVOUS requests a port sends per peer at most this often (also on the first frame after idle). */
export const RENDEZVOUS_MIN_INTERVAL_MS = 1_000;
/** A candidate must be this much faster (RTT ratio) than the current direct path to replace it: hysteresis. */
export const PATH_SWITCH_RTT_RATIO = 0.7;
/** Weight of a new RTT sample in a candidate's smoothed RTT. */
export const PATH_RTT_ALPHA = 0.25;
/** Candidates remembered per peer (public, local and observed); the least useful is forgotten first. */
export const PATH_CANDIDATES_MAX = 16;
/** Probes outstanding per candidate (their ids and send times, for RTT). */
export const PROBES_OUTSTANDING_MAX = 4;
/** How often a port re-reads its own addresses (a change is reported: ENDPOINTS). */
export const LOCAL_ADDRESS_SCAN_MS = 5_000;
/** After a rejoin, a peer the new switch has not vouched for again (PEER_QUERY unanswered) is dropped after this long. */
export const PEER_REJOIN_GRACE_MS = 30_000;
/** PEER_QUERY is repeated this often until answered. */
export const PEER_QUERY_RETRY_MS = 1_000;
/** RENDEZVOUS and PEER_QUERY a switch serves per member per second (and burst). */
export const RENDEZVOUS_PER_SECOND = 20;
/** REFLECT_REPLY answers a switch's reflector sends per second in total (unauthenticated requests). */
export const REFLECT_REPLIES_PER_SECOND = 200;
/** A port re-measures its NAT mapping against the reflector this often, and after it roamed. */
export const NAT_CHECK_INTERVAL_MS = 300_000;
/** A reflector answer later than this counts as none (NAT mapping 'unknown' until the next check). */
export const NAT_CHECK_TIMEOUT_MS = 2_000;

// ---------------------------------------------------------------- stream transports (docs/PROTOCOL.md, "Streams")

/**
 * An unanswered ping is repeated this often (instead of waiting a keepalive
 * interval): three in a row unanswered is how a port on UDP learns, within
 * seconds, that UDP stopped working.
 */
export const PING_RETRY_MS = 1_000;
/** Pings unanswered in a row after which the transport in use counts as broken. */
export const TRANSPORT_MISSED_PINGS = 3;
/** Frames went to the switch but nothing came back for this long: ping now rather than at the next keepalive. */
export const TRANSPORT_QUIET_MS = 1_000;
/** No handshake answer over UDP for this long: try a stream (the first attempt and two retries have gone out by then). */
export const UDP_HANDSHAKE_FALLBACK_MS = 3_000;
/** A stream that does not connect (TCP, TLS, HTTP upgrade, proxy) in this long has failed; the next kind is tried. */
export const STREAM_CONNECT_TIMEOUT_MS = 5_000;
/** Reconnecting a stream that failed or closed: first delay, doubling up to the maximum. */
export const STREAM_RETRY_INITIAL_MS = 500;
export const STREAM_RETRY_MAX_MS = 10_000;
/** While on a stream, UDP is probed this often (UDP_PROBE). */
export const UDP_PROBE_INTERVAL_MS = 2_000;
/** A probe unanswered for this long counts as lost and starts the count of stable UDP over. */
export const UDP_PROBE_TIMEOUT_MS = 1_500;
/** UDP must have answered every probe for this long (and at least UDP_STABLE_PROBES of them) before traffic moves back to it: hysteresis. */
export const UDP_STABLE_MS = 10_000;
export const UDP_STABLE_PROBES = 4;
/** After moving back to UDP the stream stays open this long, for what is still in flight on it, then closes. */
export const STREAM_LINGER_MS = 5_000;
/**
 * A port stops reading its device while its stream to the switch has more
 * than this queued (in the process), and reads again below the low mark: the
 * inner TCP then meets a full device queue at home — local congestion, which
 * it handles gently — instead of a drop further on. A device read can hold
 * megabytes of TSO super-frames, so this backpressure, not the drop bound,
 * is what paces a fast sender.
 */
export const STREAM_PAUSE_BYTES = 64 * 1024;
/** A port's own bound on its stream's queue: one device read (up to 64 super-frames) must fit, since it pauses the device above STREAM_PAUSE_BYTES. */
export const STREAM_PORT_QUEUE_BYTES = 4 * 1024 * 1024;
export const STREAM_RESUME_BYTES = 16 * 1024;
/** How often a paused port looks whether its stream has drained. */
export const STREAM_DRAIN_POLL_MS = 1;
/** PROBE_ACK answers a switch sends per second in total (the probes are unauthenticated; each needs a live index). */
export const UDP_PROBE_ACKS_PER_SECOND = 200;
/** Length prefix of a datagram on a stream: u16 big-endian. */
export const STREAM_LENGTH_SIZE = 2;
/** The largest datagram a stream carries (what UDP could carry over IPv4); a longer one is skipped unread and counted. */
export const STREAM_DATAGRAM_MAX = 65507;
/**
 * Bytes a stream may have queued for sending (in the process, not yet taken by
 * the kernel) before further datagrams are dropped and counted: a stream is
 * one ordered queue, and a frame held behind a backlog only adds delay (the
 * inner TCP retransmits what is dropped). 256 KiB is ~2 ms at 1 Gbit/s.
 */
export const STREAM_SEND_QUEUE_BYTES = 256 * 1024;
/** Before a stream has carried a handshake, a switch takes datagrams up to this size from it (an initiation is 148 bytes and a name); longer ones are skipped unbuffered. */
export const STREAM_UNBOUND_DATAGRAM_MAX = 1024;
/** A switch closes a stream that has not carried a completed handshake within this long (slowloris, idle junk). */
export const STREAM_AUTH_TIMEOUT_MS = 10_000;
/** Streams a switch holds at once, and from one address (plain TCP; WebSocket behind a proxy all share its address). */
export const STREAM_CONNECTIONS_MAX = 4096;
export const STREAM_CONNECTIONS_PER_ADDRESS = 64;
/**
 * Largest WebSocket message a switch or port accepts; one carries many
 * length-prefixed datagrams (senders write at most 256 KiB, or one datagram,
 * at a time). The WebSocket layer holds up to this much of a message before
 * the datagram checks see it, also before a handshake.
 */
export const WS_MESSAGE_MAX = 320 * 1024;
/** The WebSocket path a switch serves by default, and the subprotocol both sides name. */
export const WS_DEFAULT_PATH = '/etherlink';
export const WS_SUBPROTOCOL = 'etherlink.v2';

// ================================================================ frames, underlay and MTU

export const ETHERNET_HEADER_SIZE = 14;
export const VLAN_TAG_SIZE = 4;
export const UDP_HEADER_SIZE = 8;
export const IPV4_HEADER_SIZE = 20;
export const IPV6_HEADER_SIZE = 40;
/** Largest UDP payload (65535 minus the UDP header); nothing longer is a datagram. */
export const MAX_DATAGRAM_SIZE = 65535 - UDP_HEADER_SIZE; // 65527
/** The underlay path MTU we plan for: plain Ethernet. */
export const UNDERLAY_MTU = 1500;
/**
 * TAP MTU such that a full frame, with one 802.1Q tag, the transport header
 * and tag, fits one 1500-byte IPv6 packet unfragmented:
 * 1500 - 40 - 8 - 16 - 16 - 14 - 4 = 1402.
 */
export const DEFAULT_TAP_MTU = UNDERLAY_MTU - IPV6_HEADER_SIZE - UDP_HEADER_SIZE - TRANSPORT_OVERHEAD - ETHERNET_HEADER_SIZE - VLAN_TAG_SIZE;
