/** `pxeha install-service`: the dry run prints and changes nothing; a real run writes under a temp root. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadNodeConfig } from '../config/load.js';
import { main } from './main.js';
import { installedEntry, systemdUnit } from './service.js';

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const original = console.log;
  console.log = (...parts: unknown[]) => lines.push(parts.map(String).join(' '));
  try {
    return { code: await main(args), out: lines.join('\n') };
  } finally {
    console.log = original;
  }
}

describe('pxeha install-service', () => {
  it('packaging/pxeha.service is the unit install-service writes, for /usr/bin/node and /opt/pxeha', () => {
    const packaged = readFileSync(new URL('../../packaging/pxeha.service', import.meta.url), 'utf8');
    assert.equal(packaged, systemdUnit({ node: '/usr/bin/node', entry: '/opt/pxeha/bin/pxeha.js', config: '/etc/pxeha/node.yaml' }));
    assert.match(packaged, /^ExecStart=\/usr\/bin\/node \/opt\/pxeha\/bin\/pxeha\.js serve --config \/etc\/pxeha\/node\.yaml$/m);
    assert.match(packaged, /^WantedBy=multi-user\.target$/m);
  });

  it('--dry-run prints every step and the unit, and touches nothing', async () => {
    const root = mkdtempSync(join(tmpdir(), 'pxeha-service-'));
    try {
      const { code, out } = await cli(['install-service', '--dry-run', '--root', root, '--name', 'boot1', '--interface', 'eth1']);
      assert.equal(code, 0);
      assert.match(out, new RegExp(`^would create directory ${root}/etc/pxeha \\(mode 0750\\)$`, 'm'));
      assert.match(out, new RegExp(`^would create directory ${root}/var/lib/pxeha \\(mode 0750\\)$`, 'm'));
      assert.match(out, new RegExp(`^would write systemd unit ${root}/etc/systemd/system/pxeha.service \\(mode 0644\\):$`, 'm'));
      assert.ok(out.includes(`    ExecStart=${process.execPath} ${installedEntry()} serve --config /etc/pxeha/node.yaml`), out);
      assert.match(out, new RegExp(`^would write starter node configuration ${root}/etc/pxeha/node.yaml \\(mode 0640\\):$`, 'm'));
      assert.match(out, /^ {4}name: boot1$/m);
      assert.match(out, /^ {6}interfaces: \[eth1\]$/m);
      assert.match(out, /^dry run: nothing was changed$/m);
      assert.ok(!existsSync(join(root, 'etc')) && !existsSync(join(root, 'var')), 'nothing written');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('writes the unit, the directories and a valid starter configuration under --root; keeps an existing configuration', async () => {
    const root = mkdtempSync(join(tmpdir(), 'pxeha-service-'));
    try {
      assert.equal((await cli(['install-service', '--root', root, '--name', 'boot1', '--interface', 'eth1'])).code, 0);
      const unit = readFileSync(join(root, 'etc/systemd/system/pxeha.service'), 'utf8');
      assert.equal(unit, systemdUnit({ node: process.execPath, entry: installedEntry(), config: '/etc/pxeha/node.yaml' }));
      assert.equal(statSync(join(root, 'etc/pxeha')).mode & 0o777, 0o750);
      assert.equal(statSync(join(root, 'var/lib/pxeha')).mode & 0o777, 0o750);
      const configFile = join(root, 'etc/pxeha/node.yaml');
      assert.equal(statSync(configFile).mode & 0o777, 0o640);
      const config = await loadNodeConfig(configFile);
      assert.equal(config.name, 'boot1');
      assert.deepEqual(config.dhcp.interfaces, ['eth1']);
      assert.equal(config.dataDir, '/var/lib/pxeha');
      assert.equal(config.http.port, 8080);
      writeFileSync(configFile, 'name: mine\ndhcp: { interfaces: [eth9] }\n');
      const again = await cli(['install-service', '--root', root]);
      assert.match(again.out, /node\.yaml exists: node configuration kept as it is/);
      assert.equal(readFileSync(configFile, 'utf8'), 'name: mine\ndhcp: { interfaces: [eth9] }\n');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
