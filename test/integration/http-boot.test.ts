/**
 * HTTP boot serving against a real client (curl), over a bridge inside network namespaces this
 * file creates (coredhcp `.ci/setup-integ.sh`, per test file):
 *
 *   c0 curl  eth0 10.99.0.50/24 ── br0 ── eth0 10.99.0.1/24  pxeha serve (srv), HTTP on :8080
 *
 * pxeha runs through its command line (`apply`, `serve`, `machines`), as an operator runs it;
 * every HTTP request is made by curl from the client namespace, as iPXE or an installer would.
 * Scripts are compared as whole golden text (smee `script/auto_test.go`), artifacts byte for
 * byte. Steps build on each other in order (the install-once flow changes machine status).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { machineToken } from '../../src/auth/machine-token.js';
import type { MachineStatus } from '../../src/boot/render.js';
import { parseBackup } from '../../src/cluster/backup.js';
import { metricValue, PxehaNode } from '../helpers/dhcp-client-pxeha.js';
import { createSandbox, type Lab } from '../helpers/netns.js';

const SERVER_IP = '10.99.0.1';
const CLIENT_IP = '10.99.0.50';
const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;

const KNOWN = { name: 'web1', mac: '52:54:00:12:34:56', uuid: '4c4c4544-0042-3510-8052-b4c04f4a4d32', hostname: 'web1' };
const UNKNOWN_MAC = '52:54:00:aa:bb:cc';

/** The apply file: cluster configuration plus profiles and machines (`pxeha apply -f`). */
const APPLY = {
  subnets: [{ name: 'lab', subnet: '10.99.0.0/24', mode: 'full', pools: [{ start: '10.99.0.100', end: '10.99.0.199' }] }],
  // Named explicitly so the node holds each one (PxehaNode writes placeholders) and is ready.
  boot: { files: { bios: 'undionly.kpxe', efiX64: 'ipxe.efi', efiIa32: 'ipxe.efi' }, defaultProfile: 'discovery' },
  profiles: [
    {
      name: 'discovery',
      description: 'machines pxeha does not know',
      // Mustache values are ours; ${...} are iPXE settings and must pass through untouched.
      boot: { kind: 'script', script: '#!ipxe\necho pxeha discovery of {{mac}} from {{ip}} via {{node.name}}\nshell\n' },
    },
    {
      name: 'debian-12',
      once: true,
      localboot: 'sanboot',
      boot: {
        kind: 'kernel',
        kernel: 'debian/vmlinuz',
        initrds: ['debian/initrd.gz', 'debian/firmware.cpio.gz'],
        args: 'auto=true priority=critical hostname={{hostname}} url={{files.preseed_cfg}} ip=${net0/ip} pxeha.done={{callbackUrl}}',
      },
      files: {
        'preseed.cfg': 'd-i netcfg/get_hostname string {{hostname}}\nd-i preseed/late_command string curl -X POST {{callbackUrl}}\n',
      },
    },
  ],
  machines: [{ name: KNOWN.name, mac: KNOWN.mac, profile: 'debian-12', hostname: KNOWN.hostname }],
};

const MAC_ENC = encodeURIComponent(KNOWN.mac);
/** The machine's callback URL: its MAC and its own token (src/auth/machine-token.ts). */
const callbackUrl = (mac: string, token: string): string => `${BASE}/boot/done?mac=${encodeURIComponent(mac)}&token=${token}`;
const goldenKernel = (token: string): string => `#!ipxe
# pxeha lab1: machine web1 (52:54:00:12:34:56), profile debian-12
kernel ${BASE}/artifacts/debian/vmlinuz initrd=initrd.gz initrd=firmware.cpio.gz auto=true priority=critical hostname=web1 url=${BASE}/machines/${MAC_ENC}/files/preseed.cfg ip=\${net0/ip} pxeha.done=${callbackUrl(KNOWN.mac, token)}
initrd ${BASE}/artifacts/debian/initrd.gz
initrd ${BASE}/artifacts/debian/firmware.cpio.gz
boot
`;
const goldenLocalboot = (installedAtMs: number): string => `#!ipxe
# pxeha lab1: machine web1 (52:54:00:12:34:56), profile debian-12
# installed at ${new Date(installedAtMs).toISOString()}; reprovision to install again
echo pxeha: installed, booting from local disk
sanboot --no-describe --drive 0x80 || exit
`;
const GOLDEN_DISCOVERY = `#!ipxe
# pxeha lab1: unknown machine 52:54:00:aa:bb:cc, profile discovery
echo pxeha discovery of 52:54:00:aa:bb:cc from ${CLIENT_IP} via lab1
shell
`;
const goldenPreseed = (token: string): string => `d-i netcfg/get_hostname string web1
d-i preseed/late_command string curl -X POST ${callbackUrl(KNOWN.mac, token)}
`;

/** What iPXE asks for with the default ipxeScriptUrl: settings a VM lacks arrive empty. */
const scriptUrl = (mac: string, uuid = ''): string => `${BASE}/boot.ipxe?mac=${mac}&uuid=${uuid}&arch=x86_64&serial=&asset=`;

/** A kernel-like artifact: not a multiple of any block size, every byte position distinct mod 251. */
const KERNEL = Buffer.from(Array.from({ length: 3 * 1024 * 1024 + 4093 }, (_, i) => (i * 7 + (i >> 11)) % 251));
/** Outside the artifacts root; must never be served. */
const SECRET = 'pxeha-test-secret-2f7c1d\n';

interface CurlResult {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  /** Body bytes curl received (`%{size_download}`); with -I, curl writes headers to -o. */
  downloaded: number;
}

describe('HTTP boot with curl over a bridge (netns)', () => {
  const sandbox = createSandbox();
  let workDir: string;
  let lab: Lab;
  let node: PxehaNode;
  let seq = 0;
  /** An admin API token (the API over TCP needs one; created through the node's Unix socket). */
  let adminToken: string;

  /**
   * The callback token the node must render for `mac`, computed here from the cluster's callback
   * secret (read from a backup through the node's socket), not taken from the node's answer.
   */
  async function expectedToken(mac: string): Promise<string> {
    const { stdout } = await node.cli(['backup', '--config', node.nodeFile]);
    const entry = parseBackup(stdout).entries.find((e) => e.key === '/pxeha/secrets/callback');
    assert.ok(entry, 'the node created the callback secret');
    return machineToken(Buffer.from((JSON.parse(entry.value) as { key: string }).key, 'base64url'), mac);
  }

  /** Runs curl in the client namespace; status, last response's headers (lower-case) and body. */
  async function curl(args: readonly string[]): Promise<CurlResult> {
    const client = lab.clients[0];
    if (!client) throw new Error('no client namespace');
    seq++;
    const bodyFile = path.join(workDir, 'curl', `${seq}.body`);
    const headerFile = path.join(workDir, 'curl', `${seq}.headers`);
    const { stdout } = await client.exec(
      [
        'curl',
        '-sS',
        '--max-time',
        '15',
        '--noproxy',
        '*',
        '-o',
        bodyFile,
        '-D',
        headerFile,
        '-w',
        '%{http_code} %{size_download}',
        ...args,
      ],
      { timeoutMs: 20_000 },
    );
    const headers = new Map<string, string>();
    // With redirects or 100-continue there are several header blocks: keep the last.
    const blocks = readFileSync(headerFile, 'utf8')
      .split(/\r?\n\r?\n/)
      .filter((b) => b.trim() !== '');
    for (const line of (blocks.at(-1) ?? '').split(/\r?\n/).slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    let body: Buffer;
    try {
      body = readFileSync(bodyFile);
    } catch {
      body = Buffer.alloc(0); // HEAD and 304: curl writes no file
    }
    const [status, downloaded] = stdout.trim().split(' ').map(Number);
    return { status: status ?? 0, headers, body, downloaded: downloaded ?? -1 };
  }

  const text = (r: CurlResult): string => r.body.toString('utf8');
  const json = <T>(r: CurlResult): T => JSON.parse(text(r)) as T;
  const metrics = async (): Promise<string> => text(await curl([`${BASE}/metrics`]));
  const refused = (m: string, reason?: string): number =>
    reason !== undefined
      ? metricValue(m, 'pxeha_artifact_refused_total', { protocol: 'http', reason })
      : m
          .split('\n')
          .filter((l) => l.startsWith('pxeha_artifact_refused_total{') && l.includes('protocol="http"'))
          .reduce((sum, l) => sum + Number(l.trim().split(/\s+/).at(-1)), 0);

  async function machinesJson(): Promise<{ machines: { name: string }[]; statuses: MachineStatus[] }> {
    const { stdout } = await node.cli(['machines', '-o', 'json', '--config', node.nodeFile]);
    return JSON.parse(stdout) as { machines: { name: string }[]; statuses: MachineStatus[] };
  }

  before(async () => {
    workDir = mkdtempSync(path.join(os.tmpdir(), 'pxeha-http-boot-'));
    mkdirSync(path.join(workDir, 'curl'));
    lab = await sandbox.lab({ clients: 1, serverAddress: `${SERVER_IP}/24`, clientAddresses: [`${CLIENT_IP}/24`] });
    node = await PxehaNode.create(lab.server, {
      name: 'lab1',
      workDir,
      cluster: APPLY,
      node: { http: { address: '0.0.0.0', port: HTTP_PORT }, log: { level: 'info' } },
    });
    const debian = path.join(node.artifactsDir, 'debian');
    mkdirSync(debian, { recursive: true });
    writeFileSync(path.join(debian, 'vmlinuz'), KERNEL);
    writeFileSync(path.join(debian, 'initrd.gz'), 'initrd\n');
    writeFileSync(path.join(debian, 'firmware.cpio.gz'), 'firmware\n');
    writeFileSync(path.join(workDir, 'secret'), SECRET);
    symlinkSync(path.join(workDir, 'secret'), path.join(node.artifactsDir, 'escape'));
    await node.start();
    adminToken = (await node.cli(['tokens', 'create', '--role', 'admin', '--name', 'http-boot-test', '--config', node.nodeFile])).stdout.trim();
  });

  after(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('is ready: store answers and every advertised artifact is present', async () => {
    const r = await curl([`${BASE}/healthz`]);
    assert.equal(r.status, 200, text(r));
    assert.deepEqual(json(r), { status: 'ready', node: 'lab1', problems: [] });
  });

  it('serves a known machine its kernel profile script (golden)', async () => {
    const r = await curl([scriptUrl(KNOWN.mac, KNOWN.uuid)]);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(text(r), goldenKernel(await expectedToken(KNOWN.mac)));
  });

  it('serves the per-machine file the script points at (golden)', async () => {
    const r = await curl([`${BASE}/machines/${MAC_ENC}/files/preseed.cfg`]);
    assert.equal(r.status, 200);
    assert.equal(text(r), goldenPreseed(await expectedToken(KNOWN.mac)));
    assert.equal((await curl([`${BASE}/machines/${MAC_ENC}/files/kickstart.cfg`])).status, 404);
  });

  it('serves an unknown machine the default profile and records it as discovered (golden)', async () => {
    // iPXE sends the MAC with dashes from some firmware; the server normalises it.
    const r = await curl([scriptUrl(UNKNOWN_MAC.replaceAll(':', '-').toUpperCase())]);
    assert.equal(r.status, 200);
    assert.equal(text(r), GOLDEN_DISCOVERY);
    const { statuses } = await machinesJson();
    const seen = statuses.find((s) => s.mac === UNKNOWN_MAC);
    assert.equal(seen?.lastStage, 'script');
    assert.equal(seen?.lastNode, 'lab1');
    assert.equal(seen?.facts?.ip, CLIENT_IP, 'the request came from the client namespace over the bridge');
  });

  it('refuses a malformed boot script request with the JSON pointer of the bad field', async () => {
    const r = await curl([`${BASE}/boot.ipxe?mac=not-a-mac`]);
    assert.equal(r.status, 400);
    const body = json<{ code: string; issues: { path: string }[] }>(r);
    assert.equal(body.code, 'PXE_ERR_CONFIG_INVALID');
    assert.deepEqual(
      body.issues.map((i) => i.path),
      ['/mac'],
    );
  });

  it('serves a byte range, the whole file, HEAD and a conditional 304 of an artifact', async () => {
    const url = `${BASE}/artifacts/debian/vmlinuz`;
    const bytesBefore = metricValue(await metrics(), 'pxeha_http_artifact_bytes_total');

    const part = await curl(['-r', '100-199', url]);
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 100-199/${KERNEL.length}`);
    assert.equal(part.headers.get('content-length'), '100');
    assert.ok(part.body.equals(KERNEL.subarray(100, 200)), 'the range is the file bytes 100..199');

    const tail = await curl(['-r', `-${4093}`, url]);
    assert.equal(tail.status, 206);
    assert.ok(tail.body.equals(KERNEL.subarray(KERNEL.length - 4093)), 'a suffix range is the last bytes');

    const whole = await curl([url]);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('accept-ranges'), 'bytes');
    assert.equal(whole.headers.get('content-length'), String(KERNEL.length));
    assert.ok(whole.body.equals(KERNEL), 'the whole file, byte for byte');
    const etag = whole.headers.get('etag');
    assert.ok(etag, 'an ETag');
    assert.ok(whole.headers.get('last-modified'), 'a Last-Modified');

    const head = await curl(['-I', url]);
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(KERNEL.length));
    assert.equal(head.headers.get('etag'), etag);
    assert.equal(head.downloaded, 0, 'HEAD sends no body');

    const notModified = await curl(['-H', `If-None-Match: ${etag}`, url]);
    assert.equal(notModified.status, 304);
    assert.equal(notModified.downloaded, 0);
    const changed = await curl(['-H', 'If-None-Match: "something-else"', '-r', '0-9', url]);
    assert.equal(changed.status, 206);
    assert.ok(changed.body.equals(KERNEL.subarray(0, 10)));

    const unsatisfiable = await curl(['-r', `${KERNEL.length + 10}-${KERNEL.length + 20}`, url]);
    assert.equal(unsatisfiable.status, 416);

    // Only body bytes of GETs count: 100 + 4093 + whole + 10 (HEAD, 304 and 416 send none).
    const bytesAfter = metricValue(await metrics(), 'pxeha_http_artifact_bytes_total');
    assert.equal(bytesAfter - bytesBefore, 100 + 4093 + KERNEL.length + 10);
  });

  it('answers 404 for a missing artifact and counts it', async () => {
    const before = refused(await metrics(), 'not-found');
    const r = await curl([`${BASE}/artifacts/debian/missing`]);
    assert.equal(r.status, 404);
    assert.equal(json<{ code: string }>(r).code, 'PXE_ERR_NOT_FOUND');
    assert.equal(refused(await metrics(), 'not-found') - before, 1);
  });

  it('refuses hostile paths, never serving the file, and counts each refusal', async () => {
    const passwd = readFileSync('/etc/passwd', 'utf8');
    const hostile: { what: string; args: string[]; reason?: string }[] = [
      { what: 'dot-dot segments sent as is', args: ['--path-as-is', `${BASE}/artifacts/../../../../etc/passwd`], reason: 'parent-segment' },
      {
        what: 'encoded dot-dot-slash',
        args: [`${BASE}/artifacts/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd`],
        reason: 'parent-segment',
      },
      {
        what: 'encoded dot-dot between real segments',
        args: ['--path-as-is', `${BASE}/artifacts/debian/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd`],
        reason: 'parent-segment',
      },
      { what: 'backslash dot-dot', args: [`${BASE}/artifacts/..%5c..%5c..%5c..%5cetc%5cpasswd`], reason: 'parent-segment' },
      { what: 'symlink out of the root', args: [`${BASE}/artifacts/escape`], reason: 'outside-root' },
      { what: 'NUL byte', args: [`${BASE}/artifacts/debian/vmlinuz%00.txt`], reason: 'nul-byte' },
      { what: 'over-long name', args: [`${BASE}/artifacts/${'a'.repeat(300)}`], reason: 'too-long' },
      // Double encoding: refused whether the server decodes once (a literal name, 404) or twice (403).
      { what: 'double-encoded dot-dot-slash', args: [`${BASE}/artifacts/%252e%252e%252f%252e%252e%252fetc%252fpasswd`] },
    ];
    const m0 = await metrics();
    const expected = new Map<string, number>();
    for (const h of hostile) {
      const r = await curl(h.args);
      assert.ok([403, 404].includes(r.status), `${h.what}: status ${r.status}, want 403 or 404`);
      const body = text(r);
      assert.ok(!body.includes(SECRET.trim()), `${h.what}: served the secret`);
      assert.ok(!body.includes(passwd.slice(0, 16)) && !body.includes('root:x:0:0'), `${h.what}: served /etc/passwd`);
      assert.ok(!r.body.equals(KERNEL), `${h.what}: served the kernel`);
      if (h.reason) {
        assert.equal(r.status, 403, `${h.what}: refused as forbidden`);
        assert.equal(json<{ code: string }>(r).code, 'PXE_ERR_PATH_REFUSED', h.what);
        expected.set(h.reason, (expected.get(h.reason) ?? 0) + 1);
      }
    }
    const m1 = await metrics();
    // At least: the double-encoded case lands on one reason or another depending on decoding.
    for (const [reason, n] of expected) assert.ok(refused(m1, reason) - refused(m0, reason) >= n, `refusals counted for ${reason}`);
    assert.equal(refused(m1) - refused(m0), hostile.length, 'every hostile request is counted once');
  });

  it('refuses an unknown API field with 400 and the JSON pointer in issues, and counts it', async () => {
    const m0 = await metrics();
    const machine = await curl([
      '-X',
      'PUT',
      '-H',
      'content-type: application/json',
      '-H',
      `authorization: Bearer ${adminToken}`,
      '--data',
      JSON.stringify({ name: 'web2', mac: '52:54:00:12:34:57', profile: 'debian-12', colour: 'red' }),
      `${BASE}/api/v1/machines/web2`,
    ]);
    assert.equal(machine.status, 400, text(machine));
    const mBody = json<{ statusCode: number; code: string; issues: { path: string; message: string }[] }>(machine);
    assert.equal(mBody.statusCode, 400);
    assert.equal(mBody.code, 'PXE_ERR_CONFIG_INVALID');
    assert.deepEqual(mBody.issues, [{ path: '/colour', message: 'is not a known field' }]);

    const subnet = await curl([
      '-X',
      'PUT',
      '-H',
      'content-type: application/json',
      '-H',
      `authorization: Bearer ${adminToken}`,
      '--data',
      JSON.stringify({ name: 'lab', subnet: '10.99.0.0/24', reservations: [{ hwaddr: '52:54:00:12:34:56', address: '10.99.0.10' }] }),
      `${BASE}/api/v1/subnets/lab`,
    ]);
    assert.equal(subnet.status, 400, text(subnet));
    const sBody = json<{ issues: { path: string }[] }>(subnet);
    assert.ok(
      sBody.issues.some((i) => i.path === '/reservations/0/hwaddr'),
      JSON.stringify(sBody.issues),
    );

    const m1 = await metrics();
    assert.equal(
      metricValue(m1, 'pxeha_api_rejected_total', { route: '/api/v1/machines/:name' }) -
        metricValue(m0, 'pxeha_api_rejected_total', { route: '/api/v1/machines/:name' }),
      1,
    );
    assert.equal(
      (await machinesJson()).machines.some((m) => m.name === 'web2'),
      false,
      'nothing was written',
    );
  });

  it('install once: kernel, done callback, local disk, reprovision, kernel again', async () => {
    const golden = goldenKernel(await expectedToken(KNOWN.mac));
    const first = await curl([scriptUrl(KNOWN.mac, KNOWN.uuid)]);
    assert.equal(text(first), golden);

    // What an installer's late_command does, with the callback URL its script handed it.
    const url = /pxeha\.done=(\S+)/.exec(text(first))?.[1];
    assert.ok(url, 'the script carries the callback URL');
    const done = await curl(['-X', 'POST', url]);
    assert.equal(done.status, 200);
    assert.equal(text(done), `#!ipxe\necho pxeha: boot of ${KNOWN.mac} recorded as complete\n`);
    const afterDone = (await machinesJson()).statuses.find((s) => s.mac === KNOWN.mac);
    assert.equal(afterDone?.lastStage, 'done');
    assert.equal(typeof afterDone?.installedAtMs, 'number');
    assert.equal(afterDone?.facts?.uuid, KNOWN.uuid);

    const installed = await curl([scriptUrl(KNOWN.mac, KNOWN.uuid)]);
    assert.equal(text(installed), goldenLocalboot(afterDone?.installedAtMs ?? NaN));
    const stillInstalled = (await machinesJson()).statuses.find((s) => s.mac === KNOWN.mac);
    assert.equal(stillInstalled?.lastStage, 'script');
    assert.equal(stillInstalled?.installedAtMs, afterDone?.installedAtMs, 'fetching the script keeps the install mark');

    const { stdout } = await node.cli(['machines', 'reprovision', KNOWN.name, '--config', node.nodeFile]);
    assert.match(stdout, /will be provisioned on its next boot/);
    const reprovisioned = (await machinesJson()).statuses.find((s) => s.mac === KNOWN.mac);
    assert.equal(reprovisioned?.installedAtMs, undefined);

    const again = await curl([scriptUrl(KNOWN.mac, KNOWN.uuid)]);
    assert.equal(text(again), golden);
    const last = (await machinesJson()).statuses.find((s) => s.mac === KNOWN.mac);
    assert.equal(last?.lastStage, 'script');
    assert.equal(last?.installedAtMs, undefined);
  });

  it('answers an unsatisfiable range with Content-Range: bytes */size (RFC 9110 §15.5.17)', async () => {
    const r = await curl(['-r', `${KERNEL.length + 10}-${KERNEL.length + 20}`, `${BASE}/artifacts/debian/vmlinuz`]);
    assert.equal(r.status, 416);
    assert.equal(r.headers.get('content-range'), `bytes */${KERNEL.length}`);
    assert.notEqual(json<{ code: string }>(r).code, 'PXE_ERR_NOT_FOUND');
  });

  it('takes a literal percent sign in a name as a name, not a 500 (the router decodes once)', async () => {
    const r = await curl([`${BASE}/artifacts/%25`]);
    assert.equal(r.status, 404, text(r));
    assert.equal(json<{ code: string }>(r).code, 'PXE_ERR_NOT_FOUND');
  });

  it('accepts the done callback as an installer posts it (form content type, empty body)', async () => {
    const r = await curl(['--data', '', callbackUrl(UNKNOWN_MAC, await expectedToken(UNKNOWN_MAC))]);
    assert.equal(r.status, 200, text(r));
  });

  it('refuses a callback without the token of its MAC (403), and counts it', async () => {
    const m0 = await metrics();
    const missing = await curl(['--data', '', `${BASE}/boot/done?mac=${encodeURIComponent(UNKNOWN_MAC)}`]);
    assert.equal(missing.status, 403, text(missing));
    assert.equal(json<{ code: string }>(missing).code, 'PXE_ERR_FORBIDDEN');
    // The known machine's own valid token, used for another MAC.
    const other = await curl(['--data', '', callbackUrl(UNKNOWN_MAC, await expectedToken(KNOWN.mac))]);
    assert.equal(other.status, 403, text(other));
    const m1 = await metrics();
    const count = (m: string, reason: string): number => metricValue(m, 'pxeha_boot_callback_refused_total', { reason });
    assert.equal(count(m1, 'missing') - count(m0, 'missing'), 1);
    assert.equal(count(m1, 'mismatch') - count(m0, 'mismatch'), 1);
  });

  it('lets the CLI reach a running node that is not ready', async () => {
    const efi = path.join(node.artifactsDir, 'ipxe.efi');
    renameSync(efi, `${efi}.away`);
    try {
      assert.equal((await curl([`${BASE}/healthz`])).status, 503);
      const { machines } = await machinesJson();
      assert.ok(machines.some((m) => m.name === KNOWN.name));
    } finally {
      renameSync(`${efi}.away`, efi);
    }
  });

  it('counts requests by route and status', async () => {
    const m = await metrics();
    assert.ok(metricValue(m, 'pxeha_http_requests_total', { route: '/boot.ipxe', status: '200' }) >= 5);
    assert.ok(metricValue(m, 'pxeha_http_requests_total', { route: '/artifacts/*', status: '206' }) >= 3);
    assert.ok(metricValue(m, 'pxeha_http_requests_total', { route: '/artifacts/*', status: '304' }) >= 1);
    assert.ok(metricValue(m, 'pxeha_boot_stage_total', { stage: 'done' }) >= 1);
  });
});
