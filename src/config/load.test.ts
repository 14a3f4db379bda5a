import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.js';
import { loadClusterConfig, loadNodeConfig, parseClusterConfig, parseNodeConfig } from './load.js';

const lab = (f: string): string => fileURLToPath(new URL(`../../examples/lab/${f}`, import.meta.url));

function issuesOf(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'PXE_ERR_CONFIG_INVALID');
    return [...err.issues];
  }
  assert.fail('expected a ConfigError');
}

const subnet = { name: 'lab', subnet: '10.99.0.0/24', pools: [{ start: '10.99.0.100', end: '10.99.0.199' }] };

describe('cluster configuration', () => {
  it('loads the lab example with defaults applied and frozen', async () => {
    const c = await loadClusterConfig(lab('cluster.yaml'));
    assert.equal(c.subnets[0]?.mode, 'full');
    assert.equal(c.subnets[0]?.leaseSeconds, 3600);
    assert.equal(c.boot.files.efiX64, 'snponly.efi');
    assert.equal(c.boot.files.efiArm64, undefined);
    assert.equal(c.dhcp.perClientRatePerSecond, 20);
    assert.ok(Object.isFrozen(c.subnets[0]?.pools[0]));
  });

  it('names an unknown field by its JSON pointer', () => {
    const issues = issuesOf(() => parseClusterConfig({ subnets: [{ ...subnet, pools: [{ start: '10.99.0.1', end: '10.99.0.2', size: 3 }] }] }));
    assert.deepEqual(issues, [{ path: '/subnets/0/pools/0/size', message: 'is not a known field' }]);
  });

  it('rejects a malformed address with its path', () => {
    const issues = issuesOf(() => parseClusterConfig({ subnets: [{ ...subnet, pools: [{ start: '10.99.0.300', end: '10.99.0.2' }] }] }));
    assert.equal(issues[0]?.path, '/subnets/0/pools/0/start');
    assert.match(issues[0]!.message, /ipv4/);
  });

  it('checks pools against their subnet and each other', () => {
    const issues = issuesOf(() =>
      parseClusterConfig({
        subnets: [
          {
            ...subnet,
            pools: [
              { start: '10.99.0.100', end: '10.99.0.150' },
              { start: '10.99.0.140', end: '10.99.1.10' },
              { start: '10.99.0.90', end: '10.99.0.80' },
            ],
          },
        ],
      }),
    );
    assert.deepEqual(
      issues.map((i) => i.path),
      ['/subnets/0/pools/1/end', '/subnets/0/pools/1', '/subnets/0/pools/2/end'],
    );
  });

  it('rejects reservations that collide or sit outside the subnet', () => {
    const issues = issuesOf(() =>
      parseClusterConfig({
        subnets: [
          {
            ...subnet,
            reservations: [
              { mac: '52:54:00:00:00:01', address: '10.99.0.10' },
              { mac: '52-54-00-00-00-01', address: '10.99.0.10' },
              { clientId: '01aabb', address: '10.98.0.1' },
              { address: '10.99.0.12' },
            ],
          },
        ],
      }),
    );
    assert.deepEqual(
      issues.map((i) => i.path),
      ['/subnets/0/reservations/1/address', '/subnets/0/reservations/1/mac', '/subnets/0/reservations/2/address', '/subnets/0/reservations/3'],
    );
  });

  it('refuses pools in a proxy subnet and subnets with host bits', () => {
    const issues = issuesOf(() => parseClusterConfig({ subnets: [{ ...subnet, subnet: '10.99.0.5/24', mode: 'proxy' }] }));
    assert.deepEqual(
      issues.map((i) => i.path),
      ['/subnets/0/subnet', '/subnets/0/pools'],
    );
  });

  it('requires exactly one value form for a custom option', () => {
    const issues = issuesOf(() =>
      parseClusterConfig({ subnets: [{ ...subnet, options: { custom: [{ code: 252, text: 'x', hex: '00' }, { code: 253 }] } }] }),
    );
    assert.deepEqual(
      issues.map((i) => i.path),
      ['/subnets/0/options/custom/0', '/subnets/0/options/custom/1'],
    );
  });
});

describe('node configuration', () => {
  it('loads the lab example', async () => {
    const n = await loadNodeConfig(lab('node.yaml'));
    assert.equal(n.name, 'lab1');
    assert.deepEqual(n.dhcp.interfaces, ['eth0']);
    assert.equal(n.dhcp.port, 67);
    assert.equal(n.dhcp.proxyPort, 4011);
  });

  it('requires interfaces and reports missing fields at their parent', () => {
    const issues = issuesOf(() => parseNodeConfig({ name: 'n1', dhcp: {} }));
    assert.deepEqual(issues, [{ path: '/dhcp', message: "must have required property 'interfaces'" }]);
  });

  it('reports an unreadable file with PXE_ERR_CONFIG_READ', async () => {
    await assert.rejects(loadNodeConfig('/nonexistent/node.yaml'), { code: 'PXE_ERR_CONFIG_READ' });
  });
});
