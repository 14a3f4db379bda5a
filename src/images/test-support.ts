/** Helpers for the images tests only: seeded bytes, so every run chunks the very same data. */

/** `length` pseudo-random bytes from xorshift32 (Marsaglia 2003) seeded with `seed`, as little-endian words (the golden test assumes a little-endian host). */
export function seededBytes(seed: number, length: number): Buffer {
  const words = new Uint32Array(Math.ceil(length / 4));
  let s = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = s >>> 0;
  }
  return Buffer.from(words.buffer, 0, length);
}

/** Yields `parts` in pieces of at most `pieceBytes` (an input as a file or socket delivers it). */
export async function* pieces(parts: readonly Uint8Array[], pieceBytes = 1 << 20): AsyncGenerator<Uint8Array> {
  for (const part of parts) {
    for (let o = 0; o < part.length; o += pieceBytes) yield part.subarray(o, Math.min(part.length, o + pieceBytes));
  }
}
