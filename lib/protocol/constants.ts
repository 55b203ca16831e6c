// Every number of the EtherLink wire protocol: versions, message types, layouts,
// timers, limits and reason codes. docs/PROTOCOL.md explains each; change both together.

// ---------------------------------------------------------------- versions

/** The version this build speaks and puts in byte 0 of every datagram it sends. */
export const PROTOCOL_VERSION = 1;
/** Lowest and highest versions this build accepts (announced in VERSION_UNSUPPORTED). */
export const MIN_SUPPORTED_VERSION = 1;
export const MAX_SUPPORTED_VERSION = 1;

// ---------------------------------------------------------------- message types

export const MessageType = {
  JOIN: 1,
  ACCEPT: 2,
  REJECT: 3,
  DATA: 4,
  KEEPALIVE: 5,
  LEAVE: 6,
  /** Layout fixed forever, understood whatever the version byte says. */
  VERSION_UNSUPPORTED: 0xff,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const MESSAGE_TYPE_NAMES: Readonly<Record<number, string>> = {
  [MessageType.JOIN]: 'join',
  [MessageType.ACCEPT]: 'accept',
  [MessageType.REJECT]: 'reject',
  [MessageType.DATA]: 'data',
  [MessageType.KEEPALIVE]: 'keepalive',
  [MessageType.LEAVE]: 'leave',
  [MessageType.VERSION_UNSUPPORTED]: 'version-unsupported',
};

/**
 * Why `classify` refused a datagram. Negative so that one number carries
 * either a message type (>= 0) or a reason (< 0) without allocating.
 */
export const Malformed = {
  /** Shorter than the layout of its type (or than the 4-byte prefix), or bounds outside the buffer. */
  TOO_SHORT: -1,
  /** Longer than the layout of its type, or than the largest UDP payload. */
  OVERSIZED: -2,
  /** Version byte outside [MIN_SUPPORTED_VERSION, MAX_SUPPORTED_VERSION]. */
  BAD_VERSION: -3,
  UNKNOWN_TYPE: -4,
  /** A byte that v1 reserves is not zero. */
  RESERVED_NONZERO: -5,
  /** A field holds a value the layout forbids (index 0, name too long, multicast MAC...). */
  BAD_FIELD: -6,
} as const;
export type Malformed = (typeof Malformed)[keyof typeof Malformed];

export const MALFORMED_NAMES: Readonly<Record<number, string>> = {
  [Malformed.TOO_SHORT]: 'too-short',
  [Malformed.OVERSIZED]: 'oversized',
  [Malformed.BAD_VERSION]: 'bad-version',
  [Malformed.UNKNOWN_TYPE]: 'unknown-type',
  [Malformed.RESERVED_NONZERO]: 'reserved-nonzero',
  [Malformed.BAD_FIELD]: 'bad-field',
};

// ---------------------------------------------------------------- field sizes

export const PREFIX_SIZE = 4;
export const INDEX_SIZE = 4;
export const NONCE_SIZE = 8;
export const TOKEN_SIZE = 8;
export const MAC_SIZE = 6;
export const COUNTER_SIZE = 8;
/** Index value never assigned, so a reader can return it for "no index". */
export const NO_INDEX = 0;
/** Largest UTF-8 port name carried in JOIN (it is for logs only). */
export const NAME_MAX_BYTES = 32;
/** Largest UTF-8 reason text carried in REJECT. */
export const REJECT_TEXT_MAX_BYTES = 128;

// ---------------------------------------------------------------- layouts (byte offsets from the start of the datagram)

/** Common to every datagram, VERSION_UNSUPPORTED included. */
export const PrefixOffset = { VERSION: 0, TYPE: 1, RESERVED: 2 } as const;

/**
 * JOIN is fixed-size (name zero-padded to 32 bytes) so that it is never smaller
 * than ACCEPT or a REJECT answering it: the switch can't amplify.
 */
export const JoinOffset = {
  SENDER_INDEX: 4,
  NONCE: 8,
  MAC: 16,
  NAME_LENGTH: 22,
  RESERVED: 23,
  NAME: 24,
} as const;
export const JOIN_SIZE = JoinOffset.NAME + NAME_MAX_BYTES; // 56

export const AcceptOffset = {
  SENDER_INDEX: 4,
  RECEIVER_INDEX: 8,
  TOKEN: 12,
  KEEPALIVE_INTERVAL: 20,
  PORT_TIMEOUT: 22,
} as const;
export const ACCEPT_SIZE = 24;

export const RejectOffset = {
  INDEX: 4,
  REASON: 8,
  TEXT_LENGTH: 10,
  RESERVED: 11,
  TEXT: 12,
} as const;
export const REJECT_MIN_SIZE = RejectOffset.TEXT; // 12
export const REJECT_MAX_SIZE = REJECT_MIN_SIZE + REJECT_TEXT_MAX_BYTES; // 140

/** Same 16-byte slot as WireGuard's transport header (type/reserved, receiver, counter). */
export const DataOffset = {
  RECEIVER_INDEX: 4,
  COUNTER: 8,
  FRAME: 16,
} as const;
export const DATA_HEADER_SIZE = DataOffset.FRAME; // 16

export const KeepaliveOffset = {
  RECEIVER_INDEX: 4,
  TOKEN: 8,
  ECHO: 16,
} as const;
export const KEEPALIVE_SIZE = 20;

export const LeaveOffset = {
  RECEIVER_INDEX: 4,
  TOKEN: 8,
} as const;
export const LEAVE_SIZE = 16;

export const VersionUnsupportedOffset = {
  SENDER_VERSION: 0,
  TYPE: 1,
  LOWEST: 2,
  HIGHEST: 3,
} as const;
export const VERSION_UNSUPPORTED_SIZE = 4;

// ---------------------------------------------------------------- frames, underlay and MTU

export const ETHERNET_HEADER_SIZE = 14;
export const VLAN_TAG_SIZE = 4;
/** Smallest frame DATA may carry: an Ethernet header (no FCS on a TAP). */
export const MIN_FRAME_SIZE = ETHERNET_HEADER_SIZE;
export const UDP_HEADER_SIZE = 8;
export const IPV4_HEADER_SIZE = 20;
export const IPV6_HEADER_SIZE = 40;
/** Largest UDP payload (65535 minus the UDP header); nothing longer is a datagram. */
export const MAX_DATAGRAM_SIZE = 65535 - UDP_HEADER_SIZE; // 65527
export const MAX_FRAME_SIZE = MAX_DATAGRAM_SIZE - DATA_HEADER_SIZE;
/** Poly1305 tag that issue 4 appends to DATA; reserved in the MTU budget today. */
export const AUTH_TAG_SIZE = 16;
/** The underlay path MTU we plan for: plain Ethernet. */
export const UNDERLAY_MTU = 1500;
/**
 * TAP MTU such that a full frame, with one 802.1Q tag, our header and a future
 * auth tag, fits one 1500-byte IPv6 packet unfragmented:
 * 1500 - 40 - 8 - 16 - 16 - 14 - 4 = 1402.
 */
export const DEFAULT_TAP_MTU =
  UNDERLAY_MTU -
  IPV6_HEADER_SIZE -
  UDP_HEADER_SIZE -
  DATA_HEADER_SIZE -
  AUTH_TAG_SIZE -
  ETHERNET_HEADER_SIZE -
  VLAN_TAG_SIZE;

// ---------------------------------------------------------------- timers

/** Port sends a KEEPALIVE this often (the switch tells it in ACCEPT). */
export const KEEPALIVE_INTERVAL_DEFAULT_S = 10;
/** Bounds a port applies to the interval an ACCEPT announces. */
export const KEEPALIVE_INTERVAL_MIN_S = 1;
export const KEEPALIVE_INTERVAL_MAX_S = 600;
/** Switch drops a port it has not heard a valid control message from for this long. */
export const PORT_TIMEOUT_DEFAULT_S = 30;
/** The port timeout must cover at least this many keepalive intervals. */
export const PORT_TIMEOUT_MIN_INTERVALS = 2;
/** Port declares the switch dead when this many keepalives in a row went unanswered. */
export const DEAD_AFTER_MISSED_KEEPALIVES = 3;
/** JOIN retries and rejoins: first delay, doubling up to the maximum. */
export const REJOIN_BACKOFF_INITIAL_MS = 500;
export const REJOIN_BACKOFF_MAX_MS = 10_000;
/** Each delay is shortened by up to this fraction, at random, so ports don't rejoin in lockstep. */
export const REJOIN_BACKOFF_JITTER = 0.25;
/** Weight of a new RTT sample in the smoothed RTT (as TCP's SRTT, RFC 6298). */
export const RTT_SMOOTHING = 1 / 8;
/** How often the switch should call sweep(). */
export const SWITCH_SWEEP_INTERVAL_MS = 1000;

// ---------------------------------------------------------------- limits

export const MAX_SESSIONS_DEFAULT = 1024;
/**
 * Unsolicited replies (REJECT, VERSION_UNSUPPORTED) per second, and the burst,
 * so a spoofed source can't turn a switch or port into a reflector.
 */
export const REPLY_BUDGET_PER_SECOND = 10;
export const REPLY_BUDGET_BURST = 10;
/** Log events about bad input ('malformed', 'incompatible-version') per second. */
export const NOISY_EVENT_BUDGET_PER_SECOND = 5;
export const NOISY_EVENT_BUDGET_BURST = 5;

// ---------------------------------------------------------------- reject reasons

export const RejectReason = {
  UNSPECIFIED: 0,
  /** The switch's session table is at its limit. */
  SWITCH_FULL: 1,
  /** A KEEPALIVE or DATA named an index the switch does not know (e.g. it restarted): rejoin now. */
  UNKNOWN_SESSION: 2,
  /** Policy refused this port (reserved for access control). */
  NOT_PERMITTED: 3,
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];

export const REJECT_REASON_NAMES: Readonly<Record<number, string>> = {
  [RejectReason.UNSPECIFIED]: 'unspecified',
  [RejectReason.SWITCH_FULL]: 'switch-full',
  [RejectReason.UNKNOWN_SESSION]: 'unknown-session',
  [RejectReason.NOT_PERMITTED]: 'not-permitted',
};
