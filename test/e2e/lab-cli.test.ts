/**
 * `pxeha lab` as a person runs it: up, boot one BIOS machine to its callback, down, and nothing
 * of the lab (namespaces, processes, state) is left. The lab's namespace names are fixed
 * (pxlab-srv, pxlab-lan), so this fails, rather than touch it, when someone's lab is up.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { LAB_NAMESPACES, readState } from '../../src/lab/lab.js';
import { REPO_ROOT, run } from '../helpers/netns.js';

const PXEHA = path.join(REPO_ROOT, 'bin', 'pxeha.js');
const stateDir = path.join(mkdtempSync(path.join(tmpdir(), 'pxeha-lab-cli-')), 'lab');

const pxeha = (args: string[], timeoutMs: number) => run([process.execPath, PXEHA, 'lab', ...args, '--state-dir', stateDir], { timeoutMs, allowFailure: true });

/** True once the process has exited (a zombie awaiting its reaper has an empty command line). */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return true;
    }
    if (cmdline === '') return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

after(async () => {
  if (readState(stateDir)) await pxeha(['down'], 60_000);
});

test('pxeha lab up, boot, down', { timeout: 300_000 }, async (t) => {
  const before = (await run(['ip', 'netns', 'list'])).stdout;
  for (const ns of Object.values(LAB_NAMESPACES)) assert.doesNotMatch(before, new RegExp(`^${ns}\\b`, 'm'), `${ns} exists: a lab is up; pxeha lab down first`);

  const up = await pxeha(['up', '--api-port', '0'], 120_000);
  assert.equal(up.code, 0, `lab up failed:\n${up.stdout}\n${up.stderr}`);
  assert.match(up.stdout, /Unix socket .*pxeha\.sock/);

  const boot = await pxeha(['boot', '--count', '1'], 240_000);
  t.diagnostic(boot.stdout.split('\n').filter((l) => /^\[vm|booted/.test(l)).join('\n'));
  assert.equal(boot.code, 0, `lab boot failed:\n${boot.stdout}\n${boot.stderr}`);
  for (const stage of ['DHCP', 'HTTP', 'done']) assert.match(boot.stdout, new RegExp(`^\\[vm1\\] ${stage}`, 'm'), `progress line for ${stage}`);
  assert.match(boot.stdout, /^vm1\| pxeha lab: hello, 52:54:00:99:02:01 at 10\.99\.0\.\d+/m, 'the console streamed the hello profile');
  assert.match(boot.stdout, /vm1 \(BIOS, 52:54:00:99:02:01, 10\.99\.0\.\d+\) booted: [\d.]+ s/);
  const pids = readState(stateDir)?.processes.map((p) => p.pid) ?? [];
  assert.equal(pids.length, 2, 'router advertiser and node recorded');

  const down = await pxeha(['down'], 60_000);
  assert.equal(down.code, 0, `lab down failed:\n${down.stdout}\n${down.stderr}`);
  const afterList = (await run(['ip', 'netns', 'list'])).stdout;
  for (const ns of Object.values(LAB_NAMESPACES)) assert.doesNotMatch(afterList, new RegExp(`^${ns}\\b`, 'm'), `${ns} removed`);
  for (const pid of pids) assert.ok(await gone(pid), `process ${pid} stopped`);
  assert.equal(readState(stateDir), undefined, 'state removed');
});
