// The one error type of the package: every failure an embedder can catch is an
// EtherlinkError with a stable `code` (an errno name such as 'EPERM' for system
// calls, an ERR_* name otherwise) and a message that says what to do.

/** Extra facts a native failure carries (the system call and its errno). */
export interface EtherlinkErrorDetails {
  /** The system call that failed, e.g. 'open', 'TUNSETIFF', 'bind'. */
  syscall?: string;
  /** The negative errno, as Node reports it (-1 for EPERM). */
  errno?: number;
  /** What caused this error, when it wraps another. */
  cause?: unknown;
}

/**
 * An Error with a Node-style `code`. `instanceof EtherlinkError` holds for
 * errors from the TypeScript layers and from the addon alike.
 */
export class EtherlinkError extends Error {
  /** A stable code: an errno name ('EPERM') or an ERR_* name. */
  readonly code: string;
  /** The system call that failed, for native errors. */
  readonly syscall?: string;
  /** The negative errno, for native errors. */
  readonly errno?: number;

  constructor(code: string, message: string, details: EtherlinkErrorDetails = {}) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.name = 'EtherlinkError';
    this.code = code;
    if (details.syscall !== undefined) this.syscall = details.syscall;
    if (details.errno !== undefined) this.errno = details.errno;
  }
}

/** The `code` of anything thrown, if it has one. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
