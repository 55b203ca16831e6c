// Logging for the daemons: levels, human lines or JSON lines, never per frame.

/** The log levels, most severe first. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
/** A log level. */
export type LogLevel = (typeof LOG_LEVELS)[number];
/** Human lines, or one JSON object per line. */
export type LogFormat = 'text' | 'json';

/** Structured fields of a log line. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** Where the library logs: never per frame. Pass createLogger() or your own. */
export interface Logger {
  /** Something failed. */
  error(msg: string, fields?: LogFields): void;
  /** Something to look at. */
  warn(msg: string, fields?: LogFields): void;
  /** A change of state (a port joined, a capture started). */
  info(msg: string, fields?: LogFields): void;
  /** Details for debugging. */
  debug(msg: string, fields?: LogFields): void;
  /** Whether a level is logged (to skip building costly fields). */
  enabled(level: LogLevel): boolean;
}

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** A daemon's logger: its level can change at run time (SIGHUP with --config). */
export interface LevelledLogger extends Logger {
  /** The current level. */
  readonly level: LogLevel;
  /** Change the level at run time. */
  setLevel(level: LogLevel): void;
}

/** A logger writing to `out` (stderr by default). */
export function createLogger(opts: { level?: LogLevel; format?: LogFormat; name?: string; out?: (line: string) => void } = {}): LevelledLogger {
  let levelName: LogLevel = opts.level ?? 'info';
  let level = RANK[levelName];
  const format = opts.format ?? 'text';
  const out = opts.out ?? ((line: string) => process.stderr.write(line + '\n'));
  const write = (lvl: LogLevel, msg: string, fields?: LogFields): void => {
    if (RANK[lvl] > level) return;
    const time = new Date().toISOString();
    if (format === 'json') {
      out(JSON.stringify({ time, level: lvl, ...(opts.name ? { component: opts.name } : {}), msg, ...fields }));
      return;
    }
    let line = `${time} ${lvl.toUpperCase().padEnd(5)} ${opts.name ? opts.name + ': ' : ''}${msg}`;
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        const s = String(v);
        line += ` ${k}=${/\s/.test(s) ? JSON.stringify(s) : s}`;
      }
    }
    out(line);
  };
  return {
    error: (m, f) => write('error', m, f),
    warn: (m, f) => write('warn', m, f),
    info: (m, f) => write('info', m, f),
    debug: (m, f) => write('debug', m, f),
    enabled: (lvl) => RANK[lvl] <= level,
    get level() {
      return levelName;
    },
    setLevel(next: LogLevel) {
      levelName = next;
      level = RANK[next];
    },
  };
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  enabled: () => false,
};
