/**
 * Access control and TLS on a real node, with real clients (curl and the pxeha CLI) in a client
 * namespace over a bridge (test/helpers/netns.ts):
 *
 *   c0 curl, pxeha CLI  eth0 10.99.0.50/24 ── br0 ── eth0 10.99.0.1/24  pxeha serve (srv)
 *                                                     :8080 plain HTTP (boot paths only)
 *                                                     :8443 HTTPS API (self-signed certificate)
 *
 * Tokens are made with `pxeha tokens create` twice over: straight into the store before the node
 * runs, and through its Unix socket while it runs. Steps build on each other in order.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { machineToken } from '../../src/auth/machine-token.js';
import { parseBackup } from '../../src/cluster/backup.js';
import { metricValue, PxehaNode } from '../helpers/dhcp-client-pxeha.js';
import { createSandbox, REPO_ROOT, run, type Lab } from '../helpers/netns.js';

const SERVER_IP = '10.99.0.1';
const CLIENT_IP = '10.99.0.50';
const PLAIN = `http://${SERVER_IP}:8080`;
const HTTPS = `https://${SERVER_IP}:8443`;
const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
const WEB1 = { name: 'web1', mac: '52:54:00:12:34:56' };
const WEB2 = { name: 'web2', mac: '52:54:00:12:34:57' };

const APPLY = {
  subnets: [{ name: 'lab', subnet: '10.99.0.0/24', mode: 'full', pools: [{ start: '10.99.0.100', end: '10.99.0.199' }] }],
  boot: { files: { bios: 'undionly.kpxe', efiX64: 'ipxe.efi', efiIa32: 'ipxe.efi' }, defaultProfile: 'installer' },
  profiles: [{ name: 'installer', once: true, boot: { kind: 'script', script: '#!ipxe\necho installing {{hostname}}\nchain {{callbackUrl}}\n' } }],
  machines: [WEB1, WEB2],
};

interface Reply {
  status: number;
  body: string;
}

describe('access control and TLS on a node (netns, curl, CLI)', () => {
  const sandbox = createSandbox();
  let workDir: string;
  let lab: Lab;
  let node: PxehaNode;
  let certFile: string;
  const tokens: Record<'viewer' | 'operator' | 'admin', string> = { viewer: '', operator: '', admin: '' };

  /** curl in the client namespace: status and body; `auth` is a token for the Authorization header. */
  async function curl(url: string, options: { method?: string; auth?: string; json?: unknown } = {}): Promise<Reply> {
    const args = ['curl', '-sS', '--max-time', '10', '--noproxy', '*', '--cacert', certFile, '-o', '-', '-w', '\n%{http_code}'];
    if (options.method) args.push('-X', options.method);
    if (options.auth) args.push('-H', `authorization: Bearer ${options.auth}`);
    if (options.json !== undefined) args.push('-H', 'content-type: application/json', '--data', JSON.stringify(options.json));
    const { stdout } = await lab.clients[0]!.exec([...args, url], { timeoutMs: 20_000 });
    const i = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
  }
  const code = (r: Reply): string => (JSON.parse(r.body) as { code: string }).code;
  /** The pxeha CLI in the client namespace (a remote operator). */
  const remoteCli = (args: string[], env: Record<string, string> = {}) =>
    lab.clients[0]!.exec(['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, PXEHA, ...args], { allowFailure: true, timeoutMs: 30_000 });
  const metrics = async (): Promise<string> => (await curl(`${PLAIN}/metrics`)).body;

  before(async () => {
    workDir = mkdtempSync(path.join(os.tmpdir(), 'pxeha-access-'));
    certFile = path.join(workDir, 'api.pem');
    const keyFile = path.join(workDir, 'api.key');
    // A self-signed certificate for the node's address, made for this test.
    await run([
      'openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=pxeha-test', '-addext', `subjectAltName=IP:${SERVER_IP}`, '-keyout', keyFile, '-out', certFile,
    ]);
    lab = await sandbox.lab({ clients: 1, serverAddress: `${SERVER_IP}/24`, clientAddresses: [`${CLIENT_IP}/24`] });
    node = await PxehaNode.create(lab.server, {
      name: 'lab1',
      workDir,
      cluster: APPLY,
      node: { http: { address: '0.0.0.0', port: 8080, tls: { certFile, keyFile, port: 8443 } }, log: { level: 'info' } },
    });
    // No node runs yet: straight into its store.
    tokens.viewer = (await node.cli(['tokens', 'create', '--role', 'viewer', '--name', 'watcher', '--config', node.nodeFile])).stdout.trim();
    await node.start();
    // The node runs: through its Unix socket (local root is admin).
    tokens.operator = (await node.cli(['tokens', 'create', '--role', 'operator', '--name', 'ops', '--config', node.nodeFile])).stdout.trim();
    tokens.admin = (await node.cli(['tokens', 'create', '--role', 'admin', '--name', 'root', '--config', node.nodeFile])).stdout.trim();
  });

  after(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('serves the API over HTTPS with the self-signed certificate, and refuses it on the plain port', async () => {
    const status = await curl(`${HTTPS}/api/v1/status`, { auth: tokens.viewer });
    assert.equal(status.status, 200, status.body);
    assert.equal((JSON.parse(status.body) as { node: string }).node, 'lab1');
    const plain = await curl(`${PLAIN}/api/v1/status`, { auth: tokens.viewer });
    assert.equal(plain.status, 403, plain.body);
    assert.equal(code(plain), 'PXE_ERR_HTTPS_REQUIRED');
    assert.match(plain.body, /HTTPS on port 8443/);
    // An unverified server is refused by the client (curl without the CA: exit 60).
    const { code: exit } = await lab.clients[0]!.exec(['curl', '-sS', '--max-time', '10', '-o', '/dev/null', `${HTTPS}/livez`], { allowFailure: true });
    assert.equal(exit, 60);
  });

  it('keeps boot paths, health and metrics open on the plain port', async () => {
    for (const url of [`${PLAIN}/boot.ipxe?mac=${WEB1.mac}`, `${PLAIN}/healthz`, `${PLAIN}/livez`, `${PLAIN}/metrics`, `${PLAIN}/artifacts/undionly.kpxe`]) {
      const r = await curl(url);
      assert.equal(r.status, 200, `${url}: ${r.body}`);
    }
  });

  it('no token: 401; a viewer reads but cannot reprovision or rebalance: 403; each refusal counted', async () => {
    const m0 = await metrics();
    const none = await curl(`${HTTPS}/api/v1/machines`);
    assert.equal(none.status, 401);
    assert.deepEqual(Object.keys(JSON.parse(none.body) as object).sort(), ['code', 'error', 'message', 'statusCode']);
    assert.equal(code(none), 'PXE_ERR_UNAUTHORIZED');
    assert.equal((await curl(`${HTTPS}/api/v1/machines`, { auth: tokens.viewer })).status, 200);
    const reprovision = await curl(`${HTTPS}/api/v1/machines/web1/reprovision`, { method: 'POST', auth: tokens.viewer });
    assert.equal(reprovision.status, 403);
    assert.equal(code(reprovision), 'PXE_ERR_FORBIDDEN');
    assert.match(reprovision.body, /needs the operator role; token watcher \(\w+\) has viewer/);
    assert.equal((await curl(`${HTTPS}/api/v1/cluster/rebalance`, { method: 'POST', auth: tokens.viewer })).status, 403);
    const m1 = await metrics();
    const d = (reason: string): number => metricValue(m1, 'pxeha_api_denied_total', { reason }) - metricValue(m0, 'pxeha_api_denied_total', { reason });
    assert.equal(d('missing'), 1);
    assert.equal(d('role'), 2);
  });

  it('an operator reprovisions but cannot write configuration; an admin can', async () => {
    assert.equal((await curl(`${HTTPS}/api/v1/machines/web1/reprovision`, { method: 'POST', auth: tokens.operator })).status, 200);
    const config = { subnets: APPLY.subnets, boot: APPLY.boot };
    const denied = await curl(`${HTTPS}/api/v1/config/cluster`, { method: 'PUT', auth: tokens.operator, json: config });
    assert.equal(denied.status, 403, denied.body);
    assert.equal((await curl(`${HTTPS}/api/v1/profiles/other`, { method: 'PUT', auth: tokens.operator, json: { name: 'other', boot: { kind: 'localboot' } } })).status, 403);
    const written = await curl(`${HTTPS}/api/v1/config/cluster`, { method: 'PUT', auth: tokens.admin, json: config });
    assert.equal(written.status, 200, written.body);
    assert.equal(typeof (JSON.parse(written.body) as { revision: number }).revision, 'number');
  });

  it('the CLI reaches the HTTPS API with --token or PXEHA_TOKEN and --cacert, and reports a refusal', async () => {
    const viaFlag = await remoteCli(['machines', '-o', 'json', '--server', HTTPS, '--token', tokens.viewer, '--cacert', certFile]);
    assert.equal(viaFlag.code, 0, viaFlag.stderr);
    assert.deepEqual((JSON.parse(viaFlag.stdout) as { machines: { name: string }[] }).machines.map((m) => m.name).sort(), ['web1', 'web2']);
    const viaEnv = await remoteCli(['machines', 'reprovision', 'web2', '--server', HTTPS, '--cacert', certFile], { PXEHA_TOKEN: tokens.operator });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.match(viaEnv.stdout, /will be provisioned on its next boot/);
    const weak = await remoteCli(['tokens', 'ls', '--server', HTTPS, '--cacert', certFile], { PXEHA_TOKEN: tokens.operator });
    assert.equal(weak.code, 1);
    assert.match(weak.stderr, /^error PXE_ERR_FORBIDDEN: GET \/api\/v1\/tokens needs the admin role/m);
    const none = await remoteCli(['machines', '--server', HTTPS, '--cacert', certFile]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^error PXE_ERR_UNAUTHORIZED: /m);
  });

  it('stores tokens hashed: the store (read through a backup) holds each SHA-256, never a secret', async () => {
    const { stdout } = await node.cli(['backup', '--config', node.nodeFile]);
    const entries = parseBackup(stdout).entries.filter((e) => e.key.startsWith('/pxeha/tokens/'));
    assert.equal(entries.length, 3);
    for (const token of Object.values(tokens)) {
      const id = token.split('_')[1]!;
      const secret = token.slice(-43);
      assert.ok(!stdout.includes(secret), 'no secret anywhere in the store');
      const entry = entries.find((e) => e.key === `/pxeha/tokens/${id}`);
      assert.ok(entry, id);
      assert.equal((JSON.parse(entry.value) as { sha256: string }).sha256, createHash('sha256').update(secret).digest('hex'));
    }
    const listed = await node.cli(['tokens', 'ls', '-o', 'json', '--config', node.nodeFile]);
    const list = JSON.parse(listed.stdout) as { id: string; name: string; role: string }[];
    assert.deepEqual(list.map((t) => `${t.name}:${t.role}`).sort(), ['ops:operator', 'root:admin', 'watcher:viewer']);
    assert.ok(!listed.stdout.includes('sha256'));
  });

  it('refuses a revoked token', async () => {
    const id = tokens.viewer.split('_')[1]!;
    const { stdout } = await node.cli(['tokens', 'revoke', id, '--config', node.nodeFile]);
    assert.match(stdout, new RegExp(`token ${id} revoked`));
    const r = await curl(`${HTTPS}/api/v1/status`, { auth: tokens.viewer });
    assert.equal(r.status, 401);
    assert.match(r.body, /revoked/);
    assert.equal((await curl(`${HTTPS}/api/v1/status`, { auth: tokens.operator })).status, 200, 'other tokens still work');
  });

  it("a machine's callback token cannot touch another machine (403, counted)", async () => {
    const m0 = await metrics();
    const script = (await curl(`${PLAIN}/boot.ipxe?mac=${WEB1.mac}`)).body;
    const url = /^chain (\S+)$/m.exec(script)?.[1];
    assert.ok(url, script);
    const token = new URL(url).searchParams.get('token')!;
    // The node renders the token derived from the cluster secret (read back from a backup).
    const secret = parseBackup((await node.cli(['backup', '--config', node.nodeFile])).stdout).entries.find((e) => e.key === '/pxeha/secrets/callback')!;
    assert.equal(token, machineToken(Buffer.from((JSON.parse(secret.value) as { key: string }).key, 'base64url'), WEB1.mac));
    const forged = await curl(`${PLAIN}/boot/done?mac=${encodeURIComponent(WEB2.mac)}&token=${token}`, { method: 'POST' });
    assert.equal(forged.status, 403, forged.body);
    assert.equal(code(forged), 'PXE_ERR_FORBIDDEN');
    const bare = await curl(`${PLAIN}/boot/done?mac=${encodeURIComponent(WEB2.mac)}`, { method: 'POST' });
    assert.equal(bare.status, 403);
    const status = async (mac: string) =>
      ((JSON.parse((await curl(`${HTTPS}/api/v1/machine-status`, { auth: tokens.admin })).body) as { mac: string; installedAtMs?: number }[]).find((s) => s.mac === mac));
    assert.equal((await status(WEB2.mac))?.installedAtMs, undefined, 'web2 untouched');
    const ok = await curl(url, { method: 'POST' });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(typeof (await status(WEB1.mac))?.installedAtMs, 'number', 'web1 installed');
    const m1 = await metrics();
    const refused = (reason: string): number =>
      metricValue(m1, 'pxeha_boot_callback_refused_total', { reason }) - metricValue(m0, 'pxeha_boot_callback_refused_total', { reason });
    assert.equal(refused('mismatch'), 1);
    assert.equal(refused('missing'), 1);
  });

  it('a renewed certificate is served after SIGHUP (systemctl reload), without a restart', async () => {
    const proc = node.current!;
    const renewed = path.join(workDir, 'renewed');
    await run([
      'openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=pxeha-renewed', '-addext', `subjectAltName=IP:${SERVER_IP}`, '-keyout', `${renewed}.key`, '-out', `${renewed}.pem`,
    ]);
    const oldCert = `${certFile}.old`;
    await run(['cp', certFile, oldCert]);
    // As a renewal tool does it: new files renamed over the old ones, the key last.
    await run(['mv', `${renewed}.pem`, certFile]);
    await run(['mv', `${renewed}.key`, path.join(workDir, 'api.key')]);
    process.kill(proc.pid, 'SIGHUP');
    await proc.waitForLine((l) => l.includes('api tls certificate reloaded') && l.includes('pxeha-renewed'), { timeoutMs: 10_000 });
    const fresh = await curl(`${HTTPS}/api/v1/status`, { auth: tokens.admin });
    assert.equal(fresh.status, 200, fresh.body);
    const pinnedToOld = await lab.clients[0]!.exec(['curl', '-sS', '--max-time', '10', '--noproxy', '*', '--cacert', oldCert, `${HTTPS}/healthz`], { allowFailure: true, timeoutMs: 20_000 });
    assert.notEqual(pinnedToOld.code, 0, 'the old certificate no longer verifies the listener');
    assert.equal(proc.status, undefined, 'the same process still serves');
    assert.equal(metricValue(await metrics(), 'pxeha_tls_reloads_total', { result: 'reloaded' }), 1);
  });
});
