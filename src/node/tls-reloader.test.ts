import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, rename, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { watchTlsFiles, type TlsReloader } from './tls-reloader.js';

const run = promisify(execFile);

/** The fingerprint of the certificate a fresh connection is shown. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fp);
    });
    socket.on('error', reject);
  });
}

async function makePair(dir: string, name: string): Promise<{ cert: string; key: string; fingerprint: string }> {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-keyout', key, '-out', cert]);
  const { stdout } = await run('openssl', ['x509', '-in', cert, '-noout', '-fingerprint', '-sha256']);
  return { cert, key, fingerprint: stdout.trim().split('=')[1]! };
}

describe('API certificate reload', () => {
  let dir: string;
  let first: Awaited<ReturnType<typeof makePair>>;
  let second: Awaited<ReturnType<typeof makePair>>;
  let server: Server;
  let port: number;
  let reloader: TlsReloader;
  const results: string[] = [];
  const files = () => ({ certFile: join(dir, 'api.pem'), keyFile: join(dir, 'api.key') });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pxeha-tls-'));
    first = await makePair(dir, 'first');
    second = await makePair(dir, 'second');
    await copyFile(first.cert, files().certFile);
    await copyFile(first.key, files().keyFile);
    server = createServer({ cert: readFileSync(files().certFile), key: readFileSync(files().keyFile) }, (_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    const log = { info: () => undefined, error: () => undefined };
    reloader = await watchTlsFiles(files(), server, { intervalMs: 0, log, onResult: (r) => results.push(r) });
  });
  after(async () => {
    reloader.close();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the pair it started with, and does nothing while the files are unchanged', async () => {
    assert.equal(await servedFingerprint(port), first.fingerprint);
    assert.equal(await reloader.check(), 'unchanged');
    assert.deepEqual(results, []);
  });

  it('a new certificate whose key is not there yet is refused; the listener keeps the old pair', async () => {
    await copyFile(second.cert, `${files().certFile}.tmp`);
    await rename(`${files().certFile}.tmp`, files().certFile); // how renewal tools replace a file
    assert.equal(await reloader.check(), 'refused');
    assert.equal(await servedFingerprint(port), first.fingerprint);
    assert.equal(await reloader.check(), 'unchanged', 'a refused pair is reported once, not on every check');
  });

  it('once the matching key arrives, new connections get the new certificate', async () => {
    await copyFile(second.key, `${files().keyFile}.tmp`);
    await rename(`${files().keyFile}.tmp`, files().keyFile);
    assert.equal(await reloader.check(), 'reloaded');
    assert.equal(await servedFingerprint(port), second.fingerprint);
    assert.deepEqual(results, ['refused', 'reloaded']);
  });

  it('SIGHUP makes it look at once', async () => {
    await copyFile(first.cert, `${files().certFile}.tmp`);
    await copyFile(first.key, `${files().keyFile}.tmp`);
    await rename(`${files().keyFile}.tmp`, files().keyFile);
    await rename(`${files().certFile}.tmp`, files().certFile);
    process.kill(process.pid, 'SIGHUP');
    for (let i = 0; i < 100 && results.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(results, ['refused', 'reloaded', 'reloaded']);
    assert.equal(await servedFingerprint(port), first.fingerprint);
  });
});
