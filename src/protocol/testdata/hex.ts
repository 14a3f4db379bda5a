/**
 * Golden packets of every codec's tests: hex bytes with `#` comments (a comment per field, and a
 * header saying where the bytes came from), one `.hex` file a packet in the codec's testdata/.
 * Whitespace is ignored; anything else that is not hex fails loudly. Test support only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function parseHex(text: string): Buffer {
  const digits = text
    .split('\n')
    .map((line) => line.replace(/#.*$/, ''))
    .join('')
    .replace(/\s+/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(digits)) throw new Error('golden file holds something other than hex byte pairs');
  return Buffer.from(digits, 'hex');
}

export interface HexFixtures {
  /** The bytes of one `.hex` file of the directory. */
  readHexFixture(name: string): Buffer;
  /** Every `.hex` file of the directory, sorted. */
  listHexFixtures(): string[];
}

/** The fixtures of one testdata directory, e.g. `hexFixtures(new URL('./testdata/', import.meta.url))` (in src/protocol/testdata/, which the build leaves out). */
export function hexFixtures(dir: URL): HexFixtures {
  const path = fileURLToPath(dir);
  return {
    readHexFixture: (name) => parseHex(readFileSync(`${path}${name}`, 'utf8')),
    listHexFixtures: () =>
      readdirSync(path)
        .filter((f) => f.endsWith('.hex'))
        .sort(),
  };
}
