/**
 * Netascii encoding for the send side (RFC 1350 §5 via RFC 764 "Telnet Protocol
 * Specification", the NVT rules): end of line is CR LF and a bare CR is CR NUL. Like tftp-hpa
 * (tftpd.c `convert` / `readit`), every byte is converted on its own, so the encoding needs no
 * state across chunk boundaries and a file can be converted a block at a time:
 *
 *   LF → CR LF      CR → CR NUL      anything else unchanged
 *
 * (A CR LF already in the file therefore becomes CR NUL CR LF, which is what tftp-hpa sends too,
 * see testdata/tftpd-hpa-data-to-tftp-hpa-netascii.hex.)
 */
const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;

/** The netascii form of `raw`; returns `raw` itself when it holds no CR or LF. */
export function toNetascii(raw: Buffer): Buffer {
  let extra = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === LF || c === CR) extra++;
  }
  if (extra === 0) return raw;
  const out = Buffer.allocUnsafe(raw.length + extra);
  let o = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as number;
    if (c === LF) {
      out[o++] = CR;
      out[o++] = LF;
    } else if (c === CR) {
      out[o++] = CR;
      out[o++] = NUL;
    } else {
      out[o++] = c;
    }
  }
  return out;
}

