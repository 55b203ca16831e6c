// Underlay addresses in the fixed 20-byte slot the addon reads and writes
// (ADDR_SLOT in lib/native.ts): text <-> slot, comparison and map keys.
import { isIP } from 'node:net';
import { ADDR_SLOT } from './native.js';
import { EtherlinkError } from '../core/errors.js';

/** Byte offset of the big-endian port inside a slot. */
const PORT_OFFSET = 16;
/** Bytes that identify a peer: address + port (the 2 reserved bytes are always 0). */
const ADDR_KEY_BYTES = 18;

/** An address slot as text: address, port and family. */
export interface DecodedAddress {
  /** Dotted quad for IPv4 (mapped) addresses, RFC 5952 text for IPv6. */
  address: string;
  port: number;
  family: 4 | 6;
}

function invalid(message: string): EtherlinkError {
  return new EtherlinkError('ERR_INVALID_ADDRESS', message);
}

function checkRoom(buf: Buffer, offset: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + ADDR_SLOT > buf.length) {
    throw invalid(`address slot at offset ${offset} does not fit in a ${buf.length}-byte buffer`);
  }
}

/** Write the 16 bytes of an IPv6 literal (already validated by isIP) at out[off]. */
function writeIPv6(text: string, out: Buffer, off: number): void {
  const words: number[] = [];
  const pushGroups = (part: string): void => {
    if (part === '') return;
    for (const group of part.split(':')) {
      if (group.includes('.')) {
        // Embedded IPv4 tail (e.g. ::ffff:192.0.2.1) fills the last two words.
        const [a, b, c, d] = group.split('.').map(Number) as [number, number, number, number];
        words.push((a << 8) | b, (c << 8) | d);
      } else {
        words.push(parseInt(group, 16));
      }
    }
  };
  const gap = text.indexOf('::');
  if (gap < 0) {
    pushGroups(text);
  } else {
    pushGroups(text.slice(0, gap));
    const head = words.length;
    pushGroups(text.slice(gap + 2));
    const tail = words.splice(head);
    while (words.length + tail.length < 8) words.push(0);
    words.push(...tail);
  }
  for (let i = 0; i < 8; i++) out.writeUInt16BE(words[i] ?? 0, off + i * 2);
}

/**
 * Encode an IPv4 or IPv6 literal and port into a 20-byte slot (IPv4 becomes
 * ::ffff:a.b.c.d). Writes into `out` at `offset` when given; returns the buffer.
 */
export function encodeAddress(ip: string, port: number, out?: Buffer, offset = 0): Buffer {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw invalid(`invalid port ${String(port)}: expected an integer 0..65535`);
  }
  const text = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  // isIP accepts IPv6 zone ids (fe80::1%eth0), but a slot has no room for one.
  const family = text.includes('%') ? 0 : isIP(text);
  if (family === 0) {
    const hint = text.includes('%') ? ' (IPv6 zone ids do not fit an address slot)' : '';
    throw invalid(`invalid IP address '${ip}'${hint}: expected an IPv4 or IPv6 literal`);
  }
  const buf = out ?? Buffer.alloc(ADDR_SLOT);
  checkRoom(buf, offset);
  if (family === 4) {
    buf.fill(0, offset, offset + 10);
    buf[offset + 10] = 0xff;
    buf[offset + 11] = 0xff;
    const parts = text.split('.');
    for (let i = 0; i < 4; i++) buf[offset + 12 + i] = Number(parts[i]);
  } else {
    writeIPv6(text.toLowerCase(), buf, offset);
  }
  buf.writeUInt16BE(port, offset + PORT_OFFSET);
  buf[offset + 18] = 0;
  buf[offset + 19] = 0;
  return buf;
}

/** True when the slot holds an IPv4 peer (::ffff:a.b.c.d). Allocation-free. */
export function isMappedIPv4(buf: Buffer, offset = 0): boolean {
  for (let i = 0; i < 10; i++) if (buf[offset + i] !== 0) return false;
  return buf[offset + 10] === 0xff && buf[offset + 11] === 0xff;
}

/** The port of a slot. Allocation-free. */
export function addressPort(buf: Buffer, offset = 0): number {
  return buf.readUInt16BE(offset + PORT_OFFSET);
}

function formatIPv6(buf: Buffer, off: number): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(off + i * 2));
  // RFC 5952: compress the longest run (>= 2) of zero words, the first one on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

/** Decode a slot into text, port and family (mapped IPv4 is shown dotted, family 4). */
export function decodeAddress(buf: Buffer, offset = 0): DecodedAddress {
  checkRoom(buf, offset);
  const port = addressPort(buf, offset);
  if (isMappedIPv4(buf, offset)) {
    const o = offset + 12;
    return { address: `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`, port, family: 4 };
  }
  return { address: formatIPv6(buf, offset), port, family: 6 };
}

/** '192.0.2.1:4242' or '[2001:db8::1]:4242'. */
export function formatAddress(buf: Buffer, offset = 0): string {
  const { address, port, family } = decodeAddress(buf, offset);
  return family === 4 ? `${address}:${port}` : `[${address}]:${port}`;
}

/** Same peer (address and port)? Allocation-free, for the per-datagram path. */
export function addressEquals(a: Buffer, aOffset: number, b: Buffer, bOffset: number): boolean {
  for (let i = 0; i < ADDR_KEY_BYTES; i++) if (a[aOffset + i] !== b[bOffset + i]) return false;
  return true;
}

/** A string that identifies the peer, for Map keys (allocates: slow path only). */
export function addressKey(buf: Buffer, offset = 0): string {
  checkRoom(buf, offset);
  return buf.toString('hex', offset, offset + ADDR_KEY_BYTES);
}
