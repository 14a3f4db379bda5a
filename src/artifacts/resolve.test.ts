import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveArtifact } from './resolve.js';

describe('resolveArtifact', () => {
  let base: string;
  let root: string;
  before(async () => {
    base = await realpath(await mkdtemp(join(tmpdir(), 'pxeha-art-')));
    root = join(base, 'root');
    await mkdir(join(root, 'debian'), { recursive: true });
    await writeFile(join(root, 'undionly.kpxe'), 'x');
    await writeFile(join(root, 'debian', 'linux'), 'k');
    await writeFile(join(base, 'secret'), 's');
    await symlink(join(base, 'secret'), join(root, 'escape'));
    await symlink(join(root, 'debian', 'linux'), join(root, 'inside'));
    await symlink('debian', join(root, 'linkdir'));
    await symlink(base, join(root, 'outdir'));
  });
  after(() => rm(base, { recursive: true, force: true }));

  const ok: [string, string][] = [
    ['undionly.kpxe', 'undionly.kpxe'],
    ['/undionly.kpxe', 'undionly.kpxe'],
    ['debian//linux', 'debian/linux'],
    ['./debian/./linux', 'debian/linux'],
    ['inside', 'debian/linux'],
    ['linkdir/linux', 'debian/linux'],
    // Out through a symlink and back in: what counts is where it ends, as realpath says.
    ['outdir/root/debian/linux', 'debian/linux'],
  ];
  for (const [requested, file] of ok) {
    it(`serves ${requested}`, async () => {
      const r = await resolveArtifact(root, requested);
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.path, join(root, file));
      assert.equal(r.stats.size, (await stat(join(root, file))).size);
    });
  }

  const refused: [string, string][] = [
    ['../secret', 'parent-segment'],
    ['debian/../../secret', 'parent-segment'],
    ['debian\\..\\..\\secret', 'parent-segment'],
    ['escape', 'outside-root'],
    ['outdir/secret', 'outside-root'],
    ['undionly.kpxe/linux', 'not-found'],
    ['undionly.kpxe\0.png', 'nul-byte'],
    ['a'.repeat(300), 'too-long'],
    ['missing', 'not-found'],
    ['debian', 'not-a-file'],
    ['C:/windows', 'absolute'],
  ];
  for (const [requested, reason] of refused) {
    it(`refuses ${JSON.stringify(requested.slice(0, 40))}: ${reason}`, async () => {
      const r = await resolveArtifact(root, requested);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.reason, reason);
    });
  }
});
