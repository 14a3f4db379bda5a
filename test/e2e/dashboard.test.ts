/**
 * The web dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core
 * over its pipe) against a 3-node cluster on a 3-member etcd (test/helpers/ha-lab.ts).
 *
 * Chromium runs inside a client namespace of the lab (c0, static address on the lab bridge)
 * through a one-line wrapper that `ip netns exec`s it, so the browser reaches the nodes' HTTP
 * addresses and nothing listens in the host namespace: playwright talks to it over the pipe it
 * launched it with. The test pastes an operator token into the dashboard's token dialog, checks
 * every page against what the cluster holds, drains node3 through the UI (confirming the
 * dialog) and sees its weight and DHCP buckets go to 0, kills node2 and sees it marked down.
 * Images: two versions of an image pushed with the CLI show as held on every node in the
 * replication matrix; a promotion and a rollback through the UI move the channel (checked
 * through the API); a change decided on a stale view is refused (409) and a viewer's (403),
 * both said on the page.
 * Screenshots of each page are written to test-artifacts/ui/.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { seededBytes } from '../../src/images/test-support.js';
import { writeEventScript, udhcpcOnce } from '../helpers/dhcp-client.js';
import { defaultHaCluster, HaLab, serverIp } from '../helpers/ha-lab.js';
import { createSandbox, REPO_ROOT } from '../helpers/netns.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = path.join(REPO_ROOT, 'test-artifacts', 'ui');
const BROWSER_IP = '10.99.0.200';
const UI = `http://${serverIp(0)}:8080/ui/`;
const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');

describe('web dashboard in headless Chromium (3 nodes, etcd)', { timeout: 420_000 }, () => {
  const sandbox = createSandbox();
  let ha: HaLab;
  let browser: Browser | undefined;
  let page: Page;
  let operatorToken: string | undefined;
  let adminToken: string | undefined;
  let dbMac: string;
  let dbIp: string;

  /** `pxeha tokens create` through node1's Unix socket; undefined when this build has no tokens. */
  async function token(role: 'viewer' | 'operator' | 'admin'): Promise<string | undefined> {
    const n = ha.nodes[0]!;
    const r = await n.ns.exec([process.execPath, PXEHA, 'tokens', 'create', '--role', role, '--name', `dashboard-e2e-${role}`, '-o', 'json', '--config', n.nodeFile], {
      allowFailure: true,
      timeoutMs: 30_000,
    });
    if (r.code !== 0) return undefined;
    return (JSON.parse(r.stdout) as { token: string }).token;
  }

  /** curl from the browser's namespace to node i's API (admin token when there is one). */
  async function curl(i: number, method: string, urlPath: string, body?: unknown): Promise<string> {
    const argv = ['curl', '-sS', '-f', '-X', method, `http://${serverIp(i)}:8080${urlPath}`];
    if (adminToken) argv.push('-H', `authorization: Bearer ${adminToken}`);
    if (body !== undefined) argv.push('-H', 'content-type: application/json', '--data', JSON.stringify(body));
    return (await ha.clients[0]!.exec(argv, { timeoutMs: 15_000 })).stdout;
  }

  async function shot(name: string): Promise<void> {
    await page.waitForTimeout(300); // let the last reload paint
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  }

  async function open(view: string): Promise<void> {
    await page.goto(`${UI}#/${view}`);
    await page.locator(`[data-testid="page-${view}"]`).waitFor();
  }

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    const cluster = {
      ...defaultHaCluster(),
      boot: { files: { bios: 'undionly.kpxe', efiX64: 'snponly.efi' }, defaultProfile: 'discovery' },
      profiles: [
        { name: 'discovery', boot: { kind: 'localboot' } },
        // The installer reports back through the callback URL its script carries (with the MAC's token).
        { name: 'ubuntu-24.04', boot: { kind: 'kernel', kernel: 'ubuntu/linux', initrds: ['ubuntu/initrd'], args: 'console=ttyS0 pxeha.done={{callbackUrl}}' } },
        { name: 'rescue', boot: { kind: 'kernel', kernel: 'rescue/linux' } },
      ],
    };
    ha = await HaLab.start(sandbox, {
      nodes: 3,
      clients: 2,
      clientAddresses: [`${BROWSER_IP}/16`, undefined],
      cluster,
      memberTtlSeconds: 2,
      artifacts: () => ({ 'ubuntu/linux': 'kernel', 'ubuntu/initrd': 'initrd', 'rescue/linux': 'kernel' }),
    });
    adminToken = await token('admin');
    operatorToken = await token('operator');
    dbMac = ha.lab.clientMacs[1]!;
    // Machines: two known web servers, a database server that only gets a lease.
    await curl(0, 'PUT', '/api/v1/machines/web-01', { name: 'web-01', mac: '52:54:00:aa:00:01', profile: 'ubuntu-24.04', hostname: 'web-01' });
    await curl(0, 'PUT', '/api/v1/machines/web-02', { name: 'web-02', mac: '52:54:00:aa:00:02', profile: 'ubuntu-24.04', hostname: 'web-02' });
    await curl(0, 'PUT', '/api/v1/machines/db-01', { name: 'db-01', mac: dbMac, profile: 'rescue', hostname: 'db-01' });
    // Boot stages as iPXE would report them: web-01 boots through, web-02 stops after its
    // script, an unknown machine is discovered at node3.
    const script01 = await curl(0, 'GET', '/boot.ipxe?mac=52:54:00:aa:00:01&arch=x86_64');
    const done = /\/boot\/done\?mac=[^\s'"]+/.exec(script01)?.[0];
    assert.ok(done, `no callback URL in the script of web-01:\n${script01}`);
    await curl(0, 'GET', done);
    await curl(1, 'GET', '/boot.ipxe?mac=52:54:00:aa:00:02&arch=x86_64');
    await curl(2, 'GET', '/boot.ipxe?mac=52:54:00:aa:00:09&arch=x86_64');
    const { script } = writeEventScript(sandbox.tempDir('pxt-dash-dhcp-'));
    const lease = await udhcpcOnce(ha.clients[1]!, script);
    dbIp = lease.events.find((e) => e.event === 'bound')?.env.ip ?? '';
    assert.ok(dbIp, `db-01 got no lease\n${lease.result.stdout}${lease.result.stderr}`);

    // The browser, inside c0.
    const wrapper = path.join(sandbox.tempDir('pxt-dash-chromium-'), 'chromium-in-netns');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ha.clients[0]!.name} ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    browser = await chromium.launch({
      executablePath: wrapper,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 60_000,
    });
    page = await browser.newPage({ viewport: { width: 1360, height: 820 } });
    page.setDefaultTimeout(15_000);
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    await ha?.cleanup();
    await sandbox.cleanup();
  });

  it('loads the dashboard and takes the token through its dialog', async () => {
    await page.goto(UI);
    if (operatorToken) {
      // The API refuses the first calls (401): the dashboard asks for a token.
      const dialog = page.locator('[data-testid="confirm-dialog"]');
      await dialog.waitFor();
      await dialog.locator('[data-testid="dialog-input"]').fill(operatorToken);
      await dialog.locator('[data-testid="dialog-confirm"]').click();
      await dialog.waitFor({ state: 'detached' });
    }
    await page.locator('[data-testid="live"].on').waitFor();
  });

  it('cluster: three nodes up, one leader, the applied configuration, weights and shares', async () => {
    await open('cluster');
    for (const n of ['node1', 'node2', 'node3']) {
      await page.locator(`[data-testid="state-${n}"]`, { hasText: 'up' }).waitFor();
      assert.equal(await page.locator(`[data-testid="weight-value-${n}"]`).innerText().then((t) => t.trim()), '100');
    }
    assert.equal(await page.locator('[data-testid^="leader-"]').count(), 1);
    assert.match(await page.locator('[data-testid="card-nodes"]').innerText(), /3 \/ 3 up/);
    const buckets = await Promise.all(['node1', 'node2', 'node3'].map((n) => page.locator(`[data-testid="buckets-${n}"]`).getAttribute('data-buckets')));
    assert.equal(buckets.reduce((a, b) => a + Number(b), 0), 256);
    await shot('cluster');
  });

  it('machines: search by name, MAC and IP; stage, profile and serving node', async () => {
    await open('machines');
    const web = page.locator('[data-testid="machine-52:54:00:aa:00:01"]');
    await web.waitFor();
    assert.match(await web.innerText(), /ubuntu-24\.04/);
    assert.match(await page.locator('[data-testid="stage-52:54:00:aa:00:01"]').innerText(), /done/);
    assert.match(await web.innerText(), /node1/);
    assert.match(await page.locator('[data-testid="stage-52:54:00:aa:00:02"]').innerText(), /script/);
    assert.match(await page.locator('[data-testid="machine-52:54:00:aa:00:09"]').innerText(), /discovered/);
    await page.locator(`[data-testid="machine-${dbMac}"]`, { hasText: dbIp }).waitFor();
    await shot('machines');
    await page.locator('[data-testid="machine-search"]').fill(dbIp);
    assert.match(await page.locator('[data-testid="machine-count"]').innerText(), /^1 of 4 machines/);
    await page.locator(`[data-testid="machine-${dbMac}"]`).waitFor();
    await page.locator('[data-testid="machine-search"]').fill('web-0');
    assert.match(await page.locator('[data-testid="machine-count"]').innerText(), /^2 of 4/);
    await page.locator('[data-testid="machine-search"]').fill('');
  });

  it('machines: change a profile through the dialog', async () => {
    await page.locator('[data-testid="profile-db-01"]').click();
    const dialog = page.locator('[data-testid="confirm-dialog"]');
    await dialog.locator('[data-testid="dialog-input"]').selectOption('ubuntu-24.04');
    await dialog.locator('[data-testid="dialog-confirm"]').click();
    await page.locator(`[data-testid="machine-${dbMac}"]`, { hasText: 'ubuntu-24.04' }).waitFor();
    const machine = JSON.parse(await curl(0, 'GET', '/api/v1/machines/db-01')) as { profile?: string };
    assert.equal(machine.profile, 'ubuntu-24.04');
  });

  it('leases: the pool utilisation and the lease of db-01', async () => {
    await open('leases');
    await page.locator(`[data-testid="lease-${dbIp}"]`).waitFor();
    assert.match(await page.locator('[data-testid="util-lab-10.99.1.0"]').innerText(), /^1 bound · 0 offered · 0 declined \/ 65024/);
    await shot('leases');
  });

  it('boot funnel: stages reached and where machines stopped', async () => {
    await open('funnel');
    const count = async (id: string): Promise<number> => Number(await page.locator(`[data-testid="${id}"]`).getAttribute('data-count'));
    assert.ok((await count('reached-done')) >= 1);
    assert.ok((await count('reached-script')) >= 2);
    assert.ok((await count('reached-dhcp')) >= 1);
    assert.equal(await count('stopped-done'), 1);
    assert.equal(await count('stopped-script'), 2);
    assert.equal(await count('stopped-dhcp'), 1);
    await shot('funnel');
  });

  // ---- images ----------------------------------------------------------------------------------
  let v1 = '';
  let v2 = '';
  const short = (id: string): string => id.slice(0, 12);
  interface ChannelView {
    channel: string;
    version: string;
    history: string[];
    change: string;
  }
  const channelOf = async (channel: string): Promise<ChannelView | undefined> =>
    (JSON.parse(await curl(0, 'GET', '/api/v1/images/demo')) as { channels: ChannelView[] }).channels.find((c) => c.channel === channel);

  /** `pxeha images push` on node1 (through its Unix socket), as the other image tests do. */
  async function push(version: number, channel: string): Promise<string> {
    const n = ha.nodes[0]!;
    const draft = path.join(n.workDir, `draft-v${version}`);
    mkdirSync(path.join(draft, 'boot'), { recursive: true });
    writeFileSync(path.join(draft, 'boot', 'vmlinuz'), seededBytes(700 + version, 3 * 1024 * 1024));
    writeFileSync(path.join(draft, 'boot', 'initrd.img'), seededBytes(710, 2 * 1024 * 1024));
    writeFileSync(path.join(draft, 'release'), `demo ${version}\n`);
    const r = await n.ns.exec([process.execPath, PXEHA, 'images', 'push', draft, '--name', 'demo', '--channel', channel, '-o', 'json', '--config', n.nodeFile], {
      timeoutMs: 120_000,
      allowFailure: true,
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return (JSON.parse(r.stdout) as { id: string }).id;
  }

  it('images: versions pushed with the CLI show as held on every node, live', async () => {
    await open('images');
    v1 = await push(1, 'stable');
    v2 = await push(2, 'test');
    // Pushed while the page is shown: it follows (images events, and a reload every 2 s).
    for (const v of [v1, v2]) {
      for (const n of ['node1', 'node2', 'node3']) {
        const cell = page.locator(`[data-testid="holding-demo-${short(v)}-${n}"]`);
        await page.locator(`[data-testid="holding-demo-${short(v)}-${n}"][data-state="held"]`).waitFor({ timeout: 60_000 });
        assert.match(await cell.innerText(), /held/);
      }
    }
    assert.equal((await page.locator('[data-testid="channel-version-demo-stable"]').innerText()).trim(), short(v1));
    assert.equal((await page.locator('[data-testid="channel-version-demo-test"]').innerText()).trim(), short(v2));
    assert.match(await page.locator(`[data-testid="version-demo-${short(v2)}"]`).innerText(), /test/);
  });

  it('images: promote test → stable, then roll stable back, through the UI', async () => {
    await page.locator('[data-testid="promote-demo-test"]').click();
    const dialog = page.locator('[data-testid="confirm-dialog"]');
    assert.match(await dialog.innerText(), /Promote demo@test\?/);
    await dialog.locator('[data-testid="dialog-input"]').fill('stable');
    await dialog.locator('[data-testid="dialog-confirm"]').click();
    await dialog.waitFor({ state: 'detached' });
    await page.locator('[data-testid="channel-version-demo-stable"]', { hasText: short(v2) }).waitFor();
    let stable = await channelOf('stable');
    assert.equal(stable?.version, v2, 'promotion did not move stable');
    assert.equal(stable?.history[0], v1);

    await page.locator('[data-testid="rollback-demo-stable"]:not([disabled])').click();
    assert.match(await dialog.innerText(), new RegExp(`back from ${short(v2)} to ${short(v1)}`));
    await shot('images-rollback-dialog');
    await dialog.locator('[data-testid="dialog-confirm"]').click();
    await dialog.waitFor({ state: 'detached' });
    await page.locator('[data-testid="channel-version-demo-stable"]', { hasText: short(v1) }).waitFor();
    stable = await channelOf('stable');
    assert.equal(stable?.version, v1, 'rollback did not move stable');
    assert.equal(stable?.change, 'rollback');
    assert.equal((await channelOf('test'))?.version, v2);
    await shot('images');
  });

  it('images: a change decided on a stale view is refused (409) and the page says so', async () => {
    await page.locator('[data-testid="set-version-demo-stable"]').click();
    const dialog = page.locator('[data-testid="confirm-dialog"]');
    await dialog.locator('[data-testid="dialog-input"]').selectOption(v2);
    // Meanwhile someone else moves the channel.
    await curl(0, 'POST', '/api/v1/images/demo/channels/stable', { version: v2 });
    await dialog.locator('[data-testid="dialog-confirm"]').click();
    const error = page.locator('[data-testid="images-error"]');
    await error.waitFor();
    assert.match(await error.innerText(), /^Conflict/);
    assert.match(await error.innerText(), /demo@stable was changed by someone else/);
    await shot('images-conflict');
    await page.locator('[data-testid="images-error-dismiss"]').click();
    await error.waitFor({ state: 'detached' });
    assert.equal((await channelOf('stable'))?.version, v2);
  });

  it('images: a viewer sees the matrix but its changes are refused (403), said on the page', async (t) => {
    const viewerToken = await token('viewer');
    if (!viewerToken) return t.skip('this build has no tokens');
    const context = await browser!.newContext({ viewport: { width: 1360, height: 820 } });
    try {
      await context.addInitScript((value) => sessionStorage.setItem('pxeha.token', value), viewerToken);
      const viewer = await context.newPage();
      viewer.setDefaultTimeout(15_000);
      await viewer.goto(`${UI}#/images`);
      await viewer.locator(`[data-testid="holding-demo-${short(v1)}-node1"][data-state="held"]`).waitFor();
      await viewer.locator('[data-testid="rollback-demo-stable"]').click();
      await viewer.locator('[data-testid="dialog-confirm"]').click();
      const error = viewer.locator('[data-testid="images-error"]');
      await error.waitFor();
      assert.match(await error.innerText(), /^Not allowed/);
      assert.match(await error.innerText(), /operator token/);
      // It stays through the page's reloads (every 2 s) until dismissed.
      await viewer.waitForTimeout(2500);
      assert.match(await error.innerText(), /^Not allowed/);
      // Said on the page, not by asking for another token.
      assert.equal(await viewer.locator('[data-testid="confirm-dialog"]').count(), 0);
      assert.equal((await channelOf('stable'))?.version, v2);
    } finally {
      await context.close();
    }
  });

  it('drains node3 through the UI: its weight and buckets go to 0', async () => {
    await open('cluster');
    await page.locator('[data-testid="drain-node3"]').click();
    const dialog = page.locator('[data-testid="confirm-dialog"]');
    assert.match(await dialog.innerText(), /Drain node3\?/);
    await shot('drain-dialog');
    await dialog.locator('[data-testid="dialog-confirm"]').click();
    await page.locator('[data-testid="drained-node3"]').waitFor();
    await page.locator('[data-testid="buckets-node3"][data-buckets="0"]').waitFor();
    assert.match(await page.locator('[data-testid="weight-value-node3"]').innerText(), /^0(?!\d)/);
    // Every node follows: designation gives node3 no bucket.
    for (const n of ha.nodes) {
      const deadline = Date.now() + 5000;
      for (;;) {
        const placement = await n.api<{ nodes: { name: string; buckets: number; weight: number }[] }>('/api/v1/cluster/placement');
        const node3 = placement.nodes.find((x) => x.name === 'node3');
        if (node3?.buckets === 0 && node3.weight === 0) break;
        if (Date.now() > deadline) assert.fail(`${n.name} still gives node3 ${node3?.buckets} buckets`);
        await sleep(100);
      }
    }
  });

  it('kills node2 and shows it down within seconds', async (t) => {
    await open('cluster');
    const killedAt = Date.now();
    await ha.kill(1);
    await page.locator('[data-testid="state-node2"]', { hasText: 'down' }).waitFor({ timeout: 10_000 });
    const seconds = (Date.now() - killedAt) / 1000;
    assert.ok(seconds < 8, `node2 shown down after ${seconds} s`);
    t.diagnostic(`node2 shown down ${seconds.toFixed(1)} s after kill -9 (membership TTL 2 s)`);
    // node2's buckets went to node1 (node3 is drained).
    await page.locator('[data-testid="buckets-node1"][data-buckets="256"]').waitFor();
    await shot('cluster-node-down');
  });

  it('events: node down, takeover and the drain, from the live stream', async () => {
    await open('events');
    const list = page.locator('[data-testid="events"]');
    await list.locator('li[data-kind="node-down"]', { hasText: 'node2 is down' }).waitFor();
    await list.locator('li[data-kind="takeover"]', { hasText: 'node2' }).waitFor();
    await list.locator('li[data-kind="override"]', { hasText: 'node3: drained' }).waitFor();
    await shot('events');
  });
});
