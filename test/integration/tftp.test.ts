/**
 * TFTP against real clients (curl, atftp, tftp-hpa), over a bridge inside network namespaces
 * this file creates:
 *
 *   c0 clients  eth0 10.99.0.50/24 ── br0 ── eth0 10.99.0.1/24  pxeha serve (srv), TFTP on :69
 *
 * pxeha runs through its command line (`pxeha serve`), TFTP wired into the node as deployed.
 * Every download is compared with its source by SHA-256. The packaged clients cover RFC 1350,
 * blksize, tsize, netascii and block-number rollover; test/helpers/tftp-client.ts covers what
 * none of them does (windowsize, a stranger's packets to a transfer port, a client that stops
 * answering while the server shuts down). The shutdown case runs last.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { metricValue, PxehaNode } from '../helpers/dhcp-client-pxeha.js';
import { createSandbox, type Lab, type Netns } from '../helpers/netns.js';

const SERVER_IP = '10.99.0.1';
const CLIENT_IP = '10.99.0.50';
const PROBE = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'helpers', 'tftp-client.ts');

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe('TFTP with real clients', { timeout: 240_000 }, () => {
  const sandbox = createSandbox();
  let lab: Lab;
  let client: Netns;
  let node: PxehaNode;
  let workDir: string;
  let outDir: string;
  const files = new Map<string, Buffer>();

  const put = (name: string, data: Buffer): void => {
    files.set(name, data);
    writeFileSync(path.join(node.artifactsDir, name), data);
  };
  const digestOf = (file: string): string => sha256(readFileSync(file));
  const metrics = (): Promise<string> => node.metrics();

  /** Runs a client in the client namespace; the output lands in outDir. */
  const inClient = (argv: string[], timeoutMs = 60_000) => client.exec(argv, { timeoutMs, allowFailure: true });
  const curl = (file: string, out: string, blksize?: number) =>
    inClient([
      'curl', '-sS', '--max-time', '50',
      ...(blksize ? ['--tftp-blksize', String(blksize)] : []),
      '-o', out, `tftp://${SERVER_IP}/${file}`,
    ]);
  const atftp = (file: string, out: string, options: string[] = []) =>
    inClient(['atftp', '--tftp-timeout', '1', ...options.flatMap((o) => ['--option', o]), '-g', '-r', file, '-l', out, SERVER_IP]);
  const tftpHpa = (file: string, out: string, mode = 'octet') => inClient(['tftp', '-m', mode, SERVER_IP, '-c', 'get', file, out]);
  /** The helper client: JSON result, or { error, code } for an ERROR from the server. */
  const helper = async (options: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const r = await client.exec([process.execPath, '--import', 'tsx', PROBE, JSON.stringify({ host: SERVER_IP, ...options })], {
      timeoutMs: 60_000,
      allowFailure: true,
    });
    return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
  };

  before(async () => {
    workDir = mkdtempSync(path.join(os.tmpdir(), 'pxeha-tftp-'));
    outDir = path.join(workDir, 'out');
    mkdirSync(outDir);
    lab = await sandbox.lab({ clients: 1, serverAddress: `${SERVER_IP}/24`, clientAddresses: [`${CLIENT_IP}/24`] });
    client = lab.clients[0] as Netns;
    node = await PxehaNode.create(lab.server, {
      name: 'tftp1',
      workDir,
      cluster: { subnets: [] },
      node: { advertiseAddress: SERVER_IP, log: { level: 'info' } },
    });
    put('empty.bin', Buffer.alloc(0));
    put('exact512.bin', randomBytes(512 * 8));
    put('exact1468.bin', randomBytes(1468 * 5));
    put('one.bin', Buffer.from('x'));
    put('medium.bin', randomBytes(1024 * 1024 + 77));
    // More than 65535 blocks at blksize 512: block numbers wrap past 65535 to 0.
    put('rollover.bin', randomBytes(512 * 65_536 + 1000));
    put('text.txt', Buffer.from('line one\nline two\r\nbare cr\r and a tail\n'.repeat(200)));
    // Debian's /usr/lib/ipxe/ipxe.efi is a symlink to /boot/ipxe.efi: outside any root, so the
    // rule refuses it as a link. Copies are served; a link to the original is refused.
    for (const name of ['undionly.kpxe', 'ipxe.efi']) {
      copyFileSync(path.join('/usr/lib/ipxe', name), path.join(node.artifactsDir, name));
      files.set(name, readFileSync(path.join(node.artifactsDir, name)));
    }
    mkdirSync(path.join(node.artifactsDir, 'debian'));
    put('debian/linux', randomBytes(5000));
    symlinkSync('../undionly.kpxe', path.join(node.artifactsDir, 'debian', 'inside-link'));
    symlinkSync('/usr/lib/ipxe/undionly.kpxe', path.join(node.artifactsDir, 'escape-link'));
    writeFileSync(path.join(workDir, 'secret'), 'secret\n');
    await node.start();
    await node.waitForLog((l) => l.msg === 'tftp listening');
  });

  after(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('serves undionly.kpxe and ipxe.efi from /usr/lib/ipxe to curl, atftp and tftp-hpa', async () => {
    for (const name of ['undionly.kpxe', 'ipxe.efi']) {
      const want = sha256(files.get(name) as Buffer);
      const outs = [`${name}.curl`, `${name}.atftp`, `${name}.hpa`].map((o) => path.join(outDir, o));
      const results = await Promise.all([curl(name, outs[0] as string, 1468), atftp(name, outs[1] as string), tftpHpa(name, outs[2] as string)]);
      for (const [i, r] of results.entries()) {
        assert.equal(r.code, 0, `${name} client ${i}: ${r.stderr}`);
        assert.equal(digestOf(outs[i] as string), want, `${name} client ${i}`);
      }
    }
  });

  it('serves an empty file (one empty DATA block) to every client', async () => {
    const c = await inClient(['curl', '-sS', '--max-time', '10', `tftp://${SERVER_IP}/empty.bin`]);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(c.stdout, '');
    const a = await atftp('empty.bin', path.join(outDir, 'empty.atftp'), ['tsize 0']);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(readFileSync(path.join(outDir, 'empty.atftp')).length, 0);
    const h = await tftpHpa('empty.bin', path.join(outDir, 'empty.hpa'));
    assert.equal(h.code, 0, h.stderr);
    assert.equal(readFileSync(path.join(outDir, 'empty.hpa')).length, 0);
  });

  it('serves exact block-size multiples (a final empty block) and a 1-byte file', async () => {
    const cases: [string, number | undefined][] = [
      ['exact512.bin', undefined],
      ['exact1468.bin', 1468],
      ['one.bin', 1468],
      ['debian/linux', 1024],
      ['debian/inside-link', 512],
    ];
    for (const [name, blksize] of cases) {
      const out = path.join(outDir, `${name.replace('/', '_')}.curl`);
      const r = await curl(name, out, blksize);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      const want = name === 'debian/inside-link' ? files.get('undionly.kpxe') : files.get(name);
      assert.equal(digestOf(out), sha256(want as Buffer), name);
    }
    const a = await atftp('exact1468.bin', path.join(outDir, 'exact1468.atftp'), ['blksize 1468', 'tsize 0']);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(digestOf(path.join(outDir, 'exact1468.atftp')), sha256(files.get('exact1468.bin') as Buffer));
  });

  it('converts netascii for tftp-hpa (which converts back)', async () => {
    const out = path.join(outDir, 'text.hpa');
    const r = await tftpHpa('text.txt', out, 'netascii');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(out, 'latin1'), (files.get('text.txt') as Buffer).toString('latin1'));
  });

  it('rolls block numbers over past 65535 at blksize 512 (curl and tftp-hpa)', async () => {
    const want = sha256(files.get('rollover.bin') as Buffer);
    const outCurl = path.join(outDir, 'rollover.curl');
    const outHpa = path.join(outDir, 'rollover.hpa');
    const [c, h] = await Promise.all([curl('rollover.bin', outCurl, 512), tftpHpa('rollover.bin', outHpa)]);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(h.code, 0, h.stderr);
    assert.equal(digestOf(outCurl), want);
    assert.equal(digestOf(outHpa), want);
    rmSync(outCurl);
    rmSync(outHpa);
  });

  it('negotiates windowsize (RFC 7440) with a client that asks for it', async () => {
    const r = await helper({ file: 'medium.bin', blksize: 1468, windowsize: 16, tsize: true });
    assert.equal(r['error'], undefined, JSON.stringify(r));
    assert.deepEqual(r['oack'], { blksize: '1468', tsize: String((files.get('medium.bin') as Buffer).length), windowsize: '16' });
    assert.equal(r['sha256'], sha256(files.get('medium.bin') as Buffer));
  });

  it('serves 50 concurrent transfers from three clients, every copy intact', async () => {
    const before = metricValue(await metrics(), 'pxeha_tftp_transfers_total', { result: 'ok' });
    const jobs = Array.from({ length: 50 }, (_, i) => {
      const out = path.join(outDir, `concurrent-${i}`);
      const run = i % 3 === 0 ? curl('medium.bin', out, 1468) : i % 3 === 1 ? atftp('medium.bin', out, ['blksize 1024']) : tftpHpa('medium.bin', out);
      return run.then((r) => ({ r, out }));
    });
    const want = sha256(files.get('medium.bin') as Buffer);
    for (const { r, out } of await Promise.all(jobs)) {
      assert.equal(r.code, 0, `${out}: ${r.stderr}`);
      assert.equal(digestOf(out), want, out);
    }
    const afterOk = metricValue(await metrics(), 'pxeha_tftp_transfers_total', { result: 'ok' });
    assert.equal(afterOk - before, 50);
  });

  it('refuses hostile paths and write requests with the right error, and counts them', async () => {
    const cases: [string, number, string, string][] = [
      // file, TFTP error code, reason label, message part. (A NUL cannot reach the path rule
      // over TFTP: it ends the file name on the wire; src/artifacts/resolve.test.ts covers it.)
      ['../secret', 2, 'parent-segment', '".."'],
      ['debian/../../secret', 2, 'parent-segment', '".."'],
      ['debian\\..\\..\\secret', 2, 'parent-segment', '".."'],
      ['escape-link', 2, 'outside-root', 'outside the artifacts root'],
      ['debian', 2, 'not-a-file', 'not a regular file'],
      ['missing.bin', 1, 'not-found', 'not found'],
      ['a'.repeat(300), 2, 'too-long', 'longer than 255'],
      ['C:/windows/system.ini', 2, 'absolute', 'absolute'],
    ];
    for (const [file, code, reason, message] of cases) {
      const before = metricValue(await metrics(), 'pxeha_tftp_refused_total', { reason });
      const r = await helper({ file, maxRetries: 1 });
      assert.equal(r['code'], code, `${JSON.stringify(file.slice(0, 40))}: ${JSON.stringify(r)}`);
      assert.match(String(r['error']), new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), file.slice(0, 40));
      const afterCount = metricValue(await metrics(), 'pxeha_tftp_refused_total', { reason });
      assert.equal(afterCount - before, 1, `${reason} counted`);
    }
    // Leading slashes mean "from the root", as tftp-hpa -s treats them: /etc/passwd is not the host's.
    const abs = await helper({ file: '/etc/passwd', maxRetries: 1 });
    assert.equal(abs['code'], 1, JSON.stringify(abs));
    // Real clients see the message too.
    const hpa = await tftpHpa('../secret', path.join(outDir, 'secret.hpa'));
    assert.match(hpa.stderr + hpa.stdout, /Error code 2: path contains "\.\."/);
    writeFileSync(path.join(outDir, 'upload'), 'x');
    const put = await inClient(['tftp', SERVER_IP, '-c', 'put', path.join(outDir, 'upload'), 'upload']);
    assert.match(put.stderr + put.stdout, /Error code 2: read-only server/);
    const m = await metrics();
    assert.ok(metricValue(m, 'pxeha_tftp_refused_total', { reason: 'write-request' }) >= 1);
    assert.ok(metricValue(m, 'pxeha_artifact_refused_total', { protocol: 'tftp', reason: 'outside-root' }) >= 1);
  });

  it('counts malformed packets and answers a stranger with ERROR 5 without disturbing the transfer', async () => {
    const script = `
      import { Probe, rrq } from ${JSON.stringify(PROBE)};
      import { encodeTftp } from ${JSON.stringify(path.resolve(path.dirname(PROBE), '../../src/protocol/tftp/packet.ts'))};
      const host = ${JSON.stringify(SERVER_IP)};
      const out = {};
      const junk = await Probe.open();
      for (const hex of ['', '00', '0009', '00030001', '0004', '0005000141', '0001666f6f', '000100', 'ffffffffffff']) {
        junk.send(Buffer.from(hex, 'hex'), 69, host);
      }
      const junkReplies = [];
      for (let r; (r = await junk.receive(500)); ) junkReplies.push(r.packet.opcode === 5 ? r.packet.code : 'other');
      out.junkReplies = junkReplies;
      const a = await Probe.open();
      a.send(rrq('medium.bin', { blksize: 1024 }), 69, host);
      const oack = await a.receive(2000);
      out.oack = oack?.packet.opcode;
      a.send(encodeTftp({ opcode: 4, block: 0 }), oack.port, host);
      const d1 = await a.receive(2000);
      out.data1 = d1?.packet.block;
      const stranger = await Probe.open();
      stranger.send(encodeTftp({ opcode: 4, block: 1 }), oack.port, host);
      const e = await stranger.receive(2000);
      out.stranger = e && e.packet.opcode === 5 ? e.packet.code : null;
      a.send(Buffer.from('0004', 'hex'), oack.port, host); // truncated ACK to the transfer port
      a.send(encodeTftp({ opcode: 4, block: 1 }), oack.port, host);
      const d2 = await a.receive(2000);
      out.data2 = d2?.packet.block;
      await a.send(encodeTftp({ opcode: 5, code: 0, message: 'enough' }), oack.port, host);
      console.log(JSON.stringify(out));
      for (const p of [junk, a, stranger]) p.close();
    `;
    const before = await metrics();
    const r = await client.exec([process.execPath, '--import', 'tsx', '--input-type=module', '--eval', script], { timeoutMs: 30_000 });
    const out = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
    assert.equal(out['oack'], 6);
    assert.equal(out['data1'], 1);
    assert.equal(out['stranger'], 5, 'a stranger gets ERROR 5 (unknown transfer ID)');
    assert.equal(out['data2'], 2, 'the transfer goes on after the stranger and the truncated ACK');
    // Requests that fail to decode (RRQ opcode, no file name / no mode) get ERROR 4; other junk is dropped.
    assert.deepEqual(out['junkReplies'], [4, 4]);
    const m = await metrics();
    const dropped = (text: string, reason: string) => metricValue(text, 'pxeha_tftp_dropped_total', { reason });
    assert.equal(dropped(m, 'malformed') - dropped(before, 'malformed'), 6 + 1, 'six junk datagrams to port 69, one to the transfer port');
    assert.equal(dropped(m, 'not-a-request') - dropped(before, 'not-a-request'), 1, 'a DATA packet to port 69');
    const refusedMalformed = (text: string) => metricValue(text, 'pxeha_tftp_refused_total', { reason: 'malformed' });
    assert.equal(refusedMalformed(m) - refusedMalformed(before), 2);
    assert.equal(metricValue(m, 'pxeha_tftp_dropped_total', { reason: 'unknown-tid' }) - metricValue(before, 'pxeha_tftp_dropped_total', { reason: 'unknown-tid' }), 1);
    await node.waitForLog((l) => l.msg === 'tftp transfer finished' && l['result'] === 'client-error');
  });

  it('on shutdown, tells a client mid-transfer (ERROR 0) and exits cleanly', async () => {
    const script = `
      import { Probe, rrq } from ${JSON.stringify(PROBE)};
      const p = await Probe.open();
      p.send(rrq('rollover.bin'), 69, ${JSON.stringify(SERVER_IP)});
      const d1 = await p.receive(2000);
      console.log(JSON.stringify({ data1: d1?.packet.block }));
      // No ACK: the server is mid-transfer, waiting. Then it is stopped.
      // Until then the server re-sends DATA 1 on its timer.
      let e = await p.receive(20000);
      while (e && e.packet.opcode === 3) e = await p.receive(20000);
      console.log(JSON.stringify({ opcode: e?.packet.opcode, code: e?.packet.code, message: e?.packet.message }));
      p.close();
    `;
    const proc = client.spawn([process.execPath, '--import', 'tsx', '--input-type=module', '--eval', script], { label: 'shutdown probe' });
    await proc.waitForLine((l) => l.includes('"data1":1'), { timeoutMs: 10_000 });
    const status = await node.stop('SIGTERM');
    assert.equal(status.code, 0, `node exit: ${JSON.stringify(status)}`);
    const line = await proc.waitForLine((l) => l.includes('"opcode"'), { timeoutMs: 10_000 });
    assert.deepEqual(JSON.parse(line), { opcode: 5, code: 0, message: 'server shutting down' });
    assert.ok(node.logs().some((l) => l.msg === 'tftp transfer finished' && l['result'] === 'aborted'));
  });
});
