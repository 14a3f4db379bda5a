/**
 * Reading a raw BOOTREQUEST without decoding it, for the two decisions made as a datagram is
 * read (server.ts): the quick drop of another node's traffic (engine.ts quickDrop) and the
 * overload queue's class (receive-queue.ts). Pure; never throws.
 */

export interface PeekedRequest {
  type: number;
  secs: number;
  serverId: string | undefined;
  ciaddrZero: boolean;
}

const OPTIONS_OFFSET = 240;

/**
 * The fields quickDrop() needs from a raw BOOTREQUEST from an Ethernet client: message type,
 * secs, option 54, whether ciaddr is 0. Undefined for anything decode and validation would
 * have to judge: not a request, not htype 1 / hlen 6, a zero MAC, a bad cookie, option
 * overload (52), a repeated or odd-sized 53 or 54, options running past the end.
 */
export function peekRequest(buf: Uint8Array): PeekedRequest | undefined {
  if (buf.length < OPTIONS_OFFSET + 1 || buf[0] !== 1 || buf[1] !== 1 || buf[2] !== 6) return undefined;
  if (buf[28] === 0 && buf[29] === 0 && buf[30] === 0 && buf[31] === 0 && buf[32] === 0 && buf[33] === 0) return undefined;
  if (buf[236] !== 0x63 || buf[237] !== 0x82 || buf[238] !== 0x53 || buf[239] !== 0x63) return undefined;
  let type: number | undefined;
  let serverId: string | undefined;
  let o = OPTIONS_OFFSET;
  for (;;) {
    if (o >= buf.length) return undefined; // no END
    const code = buf[o]!;
    if (code === 255) break;
    if (code === 0) {
      o++;
      continue;
    }
    if (o + 1 >= buf.length) return undefined;
    const len = buf[o + 1]!;
    const v = o + 2;
    if (v + len > buf.length) return undefined;
    if (code === 52) return undefined;
    if (code === 53) {
      if (type !== undefined || len !== 1) return undefined;
      type = buf[v]!;
    } else if (code === 54) {
      if (serverId !== undefined || len !== 4) return undefined;
      serverId = `${buf[v]}.${buf[v + 1]}.${buf[v + 2]}.${buf[v + 3]}`;
    }
    o = v + len;
  }
  if (type === undefined) return undefined;
  const secs = (buf[8]! << 8) | buf[9]!;
  const ciaddrZero = buf[12] === 0 && buf[13] === 0 && buf[14] === 0 && buf[15] === 0;
  return { type, secs, serverId, ciaddrZero };
}

/** The DHCP message type when it is plain to see (see peekRequest), else undefined. */
export function peekMessageType(buf: Uint8Array): number | undefined {
  return peekRequest(buf)?.type;
}
