// Invites: a one-time secret that admits one new key (`vswitch invite`,
// `vport join`), in the manner of tinc 1.1's `tinc invite` / `tinc join`.
//
// The switch makes an id and a secret and prints them in a URL with its own
// address and public key. The joining port proves the secret inside its normal
// initiation (the INVITE extension, encrypted to the switch's static key): an
// HMAC of the switch's key, the port's key and the id, keyed by the secret. So
// the secret never travels, the proof is bound to the one key that made it,
// and a replayed initiation is refused by the handshake's timestamp check. A
// redeemed invite adds one named line to the allow file; from then on the key
// is a member like any other, and revoking it is removing that line.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { EtherlinkError } from '../core/errors.js';
import { KEY_SIZE } from '../crypto/constants.js';
import { INVITE_ID_SIZE, INVITE_PROOF_SIZE, INVITE_SECRET_SIZE } from '../protocol/constants.js';

/** How long an invite lasts when `--expires` is not given. */
export const DEFAULT_INVITE_EXPIRY_S = 3600;
/** The longest an invite may last: an invite is a password, not a membership. */
export const MAX_INVITE_EXPIRY_S = 30 * 24 * 3600;
/** Invites a switch keeps at once (used-up and expired ones are pruned a day after they expire). */
export const MAX_INVITES = 1024;
/** The version byte at the start of an invite token. */
export const INVITE_TOKEN_VERSION = 1;
const TOKEN_BYTES = 1 + KEY_SIZE + INVITE_ID_SIZE + INVITE_SECRET_SIZE;
const PROOF_LABEL = Buffer.from('etherlink invite v1');
const PRUNE_AFTER_MS = 24 * 3600 * 1000;

/** What an invite URL carries: where the switch is, who it is, and the invite. */
export interface InviteToken {
  /** Host name or IP address the port reaches the switch at. */
  host: string;
  port: number;
  /** The switch's static public key (32 bytes): the port trusts no other. */
  switchPublicKey: Buffer;
  id: Buffer;
  secret: Buffer;
}

/** `etherlink://HOST:PORT/TOKEN`: TOKEN is base64url of version, switch key, id and secret. */
export function formatInviteUrl(t: InviteToken): string {
  const bytes = Buffer.concat([Buffer.from([INVITE_TOKEN_VERSION]), t.switchPublicKey, t.id, t.secret]);
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  return `etherlink://${host}:${t.port}/${bytes.toString('base64url')}`;
}

/** Parse what `vswitch invite` printed. Throws ERR_INVALID_INVITE saying what is wrong with it. */
export function parseInviteUrl(text: string): InviteToken {
  const bad = (why: string): never => {
    throw new EtherlinkError('ERR_INVALID_INVITE', `invite '${text.length > 120 ? `${text.slice(0, 120)}...` : text}' ${why}: give the whole etherlink://HOST:PORT/TOKEN line 'vswitch invite' printed`);
  };
  const m = /^etherlink:\/\/(\[[0-9A-Fa-f:.]+\]|[^/:[\]\s]+):(\d{1,5})\/([A-Za-z0-9_-]+)$/.exec(text.trim());
  if (m === null) return bad('is not an etherlink:// URL');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return bad(`has port ${m[2]}, outside 1..65535`);
  const bytes = Buffer.from(m[3]!, 'base64url');
  if (bytes.length !== TOKEN_BYTES) return bad(`carries ${bytes.length} bytes, not ${TOKEN_BYTES} (cut short when copied?)`);
  if (bytes[0] !== INVITE_TOKEN_VERSION) return bad(`is of version ${bytes[0]}; this etherlink reads version ${INVITE_TOKEN_VERSION}`);
  let at = 1;
  const take = (n: number): Buffer => Buffer.from(bytes.subarray(at, (at += n)));
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { host, port, switchPublicKey: take(KEY_SIZE), id: take(INVITE_ID_SIZE), secret: take(INVITE_SECRET_SIZE) };
}

/** What a port sends to redeem an invite: HMAC-SHA256(secret, label || switch key || port key || id), truncated. */
export function inviteProof(secret: Uint8Array, switchPublicKey: Uint8Array, portPublicKey: Uint8Array, id: Uint8Array): Buffer {
  return createHmac('sha256', secret).update(PROOF_LABEL).update(switchPublicKey).update(portPublicKey).update(id).digest().subarray(0, INVITE_PROOF_SIZE);
}

/** One invite as the switch keeps it (in `ALLOWFILE.invites`, mode 0600: the secrets are in it). */
export interface InviteRecord {
  /** 16 hex digits. */
  id: string;
  /** base64url. */
  secret: string;
  /** The network whose allow file the key joins. */
  network: string;
  /** The name its allow-file line gets; absent: the name the port announces. */
  name?: string;
  /** Unix ms. */
  created: number;
  /** Unix ms. */
  expires: number;
  /** How many keys it may admit. */
  uses: number;
  /** The keys (base64) it admitted. */
  redeemedBy: string[];
  /**
   * Unix ms when it was revoked (`vswitch invite --revoke`): its secret is
   * gone and it admits nobody, but it is kept a day so that its URL is still
   * refused as unknown (not met with silence) and --list shows it.
   */
  revoked?: number;
}

/** What `vswitch invite --list` shows of an invite: everything but its secret. */
export interface InviteSummary {
  id: string;
  network: string;
  name?: string;
  /** ISO 8601. */
  created: string;
  expires: string;
  uses: number;
  used: number;
  /** open: it admits a key; used: every use taken; expired: its time is up; revoked: voided by --revoke. */
  state: 'open' | 'used' | 'expired' | 'revoked';
}

/** An invite without its secret, as of `now`. */
export function summarizeInvite(r: InviteRecord, now: number): InviteSummary {
  const state = r.revoked !== undefined ? 'revoked' : r.redeemedBy.length >= r.uses ? 'used' : r.expires <= now ? 'expired' : 'open';
  return {
    id: r.id,
    network: r.network,
    ...(r.name !== undefined ? { name: r.name } : {}),
    created: new Date(r.created).toISOString(),
    expires: new Date(r.expires).toISOString(),
    uses: r.uses,
    used: r.redeemedBy.length,
    state,
  };
}

/** Why an invite was refused. */
export type InviteRefusal = 'unknown' | 'expired' | 'used';

/** What to make: `vswitch invite --name --expires --uses`. */
export interface InviteRequest {
  network: string;
  name?: string;
  expiresS?: number;
  uses?: number;
}

/** Check the numbers of an invite request; throws ERR_INVALID_ARG_VALUE naming the field. */
export function checkInviteRequest(r: InviteRequest): void {
  const e = r.expiresS ?? DEFAULT_INVITE_EXPIRY_S;
  if (!Number.isFinite(e) || e < 1 || e > MAX_INVITE_EXPIRY_S) {
    throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `expires: ${e} s is out of range: an invite lasts from 1 s to ${MAX_INVITE_EXPIRY_S / 86400} days`);
  }
  const u = r.uses ?? 1;
  if (!Number.isInteger(u) || u < 1 || u > 1000) throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `uses: ${u}: an invite admits from 1 to 1000 keys`);
  if (r.name !== undefined && (r.name === '' || r.name.length > 64 || /[\s#\u0000-\u001f\u007f-\u009f]/.test(r.name) || r.name.includes('='))) {
    throw new EtherlinkError('ERR_INVALID_ARG_VALUE', `name '${r.name}': give 1 to 64 printable characters without spaces, '#' or '=' (it becomes the allow-file name)`);
  }
}

/**
 * A network's invites: made, redeemed, pruned, and kept in a file (or only in
 * memory when `file` is undefined, for an embedded switch) so that they
 * survive a restart. The file is rewritten whole (write, then rename) after
 * every change.
 */
export class InviteBook {
  private readonly records = new Map<string, InviteRecord>();

  constructor(readonly file: string | undefined) {
    if (file !== undefined && existsSync(file)) {
      let list: unknown;
      try {
        list = JSON.parse(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new EtherlinkError('ERR_INVALID_INVITE', `invite file ${file} is not valid JSON (${(err as Error).message}): fix it or delete it (its invites are then void)`);
      }
      if (!Array.isArray(list)) throw new EtherlinkError('ERR_INVALID_INVITE', `invite file ${file}: expected a JSON array of invites`);
      for (const r of list as InviteRecord[]) {
        if (typeof r?.id !== 'string' || !/^[0-9a-f]{16}$/.test(r.id) || typeof r.secret !== 'string' || typeof r.expires !== 'number' || typeof r.uses !== 'number' || !Array.isArray(r.redeemedBy)) {
          throw new EtherlinkError('ERR_INVALID_INVITE', `invite file ${file}: an entry is not an invite (${JSON.stringify(r).slice(0, 80)}): fix it or delete the file`);
        }
        this.records.set(r.id, r);
      }
    }
  }

  /** Open invites (not used up, not expired) and, for a day after, spent ones. */
  list(now?: number): InviteRecord[] {
    if (now !== undefined) this.prune(now);
    return [...this.records.values()];
  }

  /** Invites held: open, and spent or expired ones for a day after they expire. */
  get size(): number {
    return this.records.size;
  }

  /** Make an invite; returns its record and raw id and secret (for the URL). */
  create(req: InviteRequest, now: number): { record: InviteRecord; id: Buffer; secret: Buffer } {
    checkInviteRequest(req);
    this.prune(now);
    if (this.records.size >= MAX_INVITES) {
      throw new EtherlinkError('ERR_TOO_MANY_INVITES', `this network has ${MAX_INVITES} invites already: wait for some to expire, or revoke them`);
    }
    const id = randomBytes(INVITE_ID_SIZE);
    const secret = randomBytes(INVITE_SECRET_SIZE);
    const record: InviteRecord = {
      id: id.toString('hex'),
      secret: secret.toString('base64url'),
      network: req.network,
      ...(req.name !== undefined ? { name: req.name } : {}),
      created: now,
      expires: now + Math.round((req.expiresS ?? DEFAULT_INVITE_EXPIRY_S) * 1000),
      uses: req.uses ?? 1,
      redeemedBy: [],
    };
    this.records.set(record.id, record);
    this.save();
    return { record, id, secret };
  }

  /** Whether this book holds the invite `id` (16 hex digits). */
  has(id: string): boolean {
    return this.records.has(id);
  }

  /**
   * Check a proof for invite `id` from `portPublicKey`. A wrong proof is
   * 'unknown' (as if there were no such invite: it tells a guesser nothing);
   * a good one for a spent or expired invite says which. A good one for an
   * open invite is not yet spent: `spend` does that once the key is written.
   */
  check(id: Buffer, proof: Buffer, switchPublicKey: Buffer, portPublicKey: Buffer, now: number): { ok: true; record: InviteRecord } | { ok: false; reason: InviteRefusal } {
    const r = this.records.get(id.toString('hex'));
    if (r === undefined || r.revoked !== undefined) return { ok: false, reason: 'unknown' };
    const want = inviteProof(Buffer.from(r.secret, 'base64url'), switchPublicKey, portPublicKey, id);
    if (proof.length !== want.length || !timingSafeEqual(proof, want)) return { ok: false, reason: 'unknown' };
    if (r.redeemedBy.length >= r.uses) return { ok: false, reason: 'used' };
    if (r.expires <= now) return { ok: false, reason: 'expired' };
    return { ok: true, record: r };
  }

  /** Record that `publicKey` (base64) used the invite. */
  spend(record: InviteRecord, publicKey: string): void {
    record.redeemedBy.push(publicKey);
    this.save();
  }

  /**
   * Void an invite: its secret is forgotten at once, the record kept a day
   * (a stranger presenting it is still told 'unknown', and --list shows it).
   * False if there was no such invite, or it was revoked already.
   */
  revoke(id: string, now: number): boolean {
    const r = this.records.get(id);
    if (r === undefined || r.revoked !== undefined) return false;
    r.revoked = now;
    r.secret = '';
    this.save();
    return true;
  }

  private prune(now: number): void {
    let changed = false;
    for (const [id, r] of this.records) {
      if (Math.min(r.expires, r.revoked ?? Infinity) + PRUNE_AFTER_MS <= now) {
        this.records.delete(id);
        changed = true;
      }
    }
    if (changed) this.save();
  }

  private save(): void {
    if (this.file === undefined) return;
    const tmp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(this.list(), null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}

/** The line a redeemed invite appends to an allow file. */
export function allowLine(publicKey: string, name: string): string {
  return `${publicKey} ${name}`;
}

/** A name an allow file takes (no spaces, '#' or '='; at most 64), from whatever a port announced. */
export function allowFileName(announced: string | undefined, fallback: string): string {
  const cleaned = (announced ?? '').replace(/[\s#=\u0000-\u001f\u007f-\u009f]+/g, '-').slice(0, 64);
  return cleaned === '' || cleaned === '-' ? fallback : cleaned;
}
