/**
 * Child process of the kill -9 test in embedded.test.ts. Several writers put keys until the
 * process is killed; each key is printed once its put has resolved. Writing to a pipe is
 * synchronous on Linux, so every printed key was acknowledged before the process could die,
 * and the test can demand that each one is on disk.
 *
 * Usage: node --import tsx crash-writer.ts <db path> <key prefix> <writers>
 */
import { openEmbeddedStore } from '../embedded-store.js';

const [path, prefix, writersArg] = process.argv.slice(2);
if (!path || !prefix || !writersArg) {
  process.stderr.write('usage: crash-writer.ts <db path> <key prefix> <writers>\n');
  process.exit(2);
}

const store = await openEmbeddedStore({ path });
process.stdout.write('ready\n');

async function write(writer: number): Promise<never> {
  for (let i = 0; ; i++) {
    const key = `${prefix}${writer}/${i}`;
    await store.put(key, `value of ${key}`);
    process.stdout.write(`${key}\n`);
  }
}

await Promise.all(Array.from({ length: Number(writersArg) }, (_, writer) => write(writer)));
