/**
 * Loads a golden packet: hex bytes with `#` comments (a comment per field, and a header saying
 * where the bytes came from). Whitespace is ignored; anything else that is not hex fails loudly.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const TESTDATA_DIR = fileURLToPath(new URL('.', import.meta.url));

export function parseHex(text: string): Buffer {
  const digits = text
    .split('\n')
    .map((line) => line.replace(/#.*$/, ''))
    .join('')
    .replace(/\s+/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(digits)) throw new Error('golden file holds something other than hex byte pairs');
  return Buffer.from(digits, 'hex');
}

export function readHexFixture(name: string): Buffer {
  return parseHex(readFileSync(`${TESTDATA_DIR}${name}`, 'utf8'));
}

/** Every `.hex` file in testdata/, sorted. */
export function listHexFixtures(): string[] {
  return readdirSync(TESTDATA_DIR)
    .filter((f) => f.endsWith('.hex'))
    .sort();
}
