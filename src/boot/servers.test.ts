import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validate } from '../config/load.js';
import { ClusterConfigSchema, ProfileSchema, type ClusterConfig, type Profile } from '../config/schema.js';
import { bucketOfMac, ownerOf } from '../dhcp/designation.js';
import { parseCidr } from '../util/ipv4.js';
import { addressFor, bootServersFor, profileArtifacts, referencedArtifacts, type BootNodeInfo } from './servers.js';

const profile = (p: unknown): Profile => validate<Profile>(ProfileSchema, p, 'profile');
const debian = profile({ name: 'debian', boot: { kind: 'kernel', kernel: '/debian/linux', initrds: ['debian/initrd.gz', 'https://mirror.example/fw.cpio'] } });
const FILES = ['debian/linux', 'debian/initrd.gz'];

const node = (name: string, i: number, holds: string[] = FILES, weight = 100): BootNodeInfo => ({
  name,
  weight,
  addresses: [`10.99.0.${i}`],
  httpPort: 8080,
  holds: new Set(holds),
});
const macOf = (i: number): string => `52:54:00:${((i >> 16) & 0xff).toString(16).padStart(2, '0')}:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
const MACS = Array.from({ length: 3000 }, (_, i) => macOf(i));

describe('profileArtifacts / referencedArtifacts', () => {
  it('names the served files of a kernel profile (relative; absolute URLs are fetched elsewhere)', () => {
    assert.deepEqual(profileArtifacts(debian), FILES);
    assert.deepEqual(profileArtifacts(profile({ name: 'l', boot: { kind: 'localboot' } })), []);
    assert.deepEqual(profileArtifacts(undefined), []);
  });

  it('collects the boot files and every profile file once, sorted', () => {
    const cluster = validate<ClusterConfig>(ClusterConfigSchema, {}, 'cluster');
    assert.deepEqual(referencedArtifacts([debian, debian], cluster.boot), ['debian/initrd.gz', 'debian/linux', 'ipxe.efi', 'undionly.kpxe']);
  });
});

describe('bootServersFor', () => {
  const nodes = [node('a', 1), node('b', 2), node('c', 3)];

  it('puts the client\'s designated DHCP node first when it holds the files, then the runners-up', () => {
    for (const mac of MACS.slice(0, 300)) {
      const { servers, complete } = bootServersFor(mac, FILES, nodes);
      assert.equal(complete, true);
      assert.equal(servers.length, 3);
      assert.equal(servers[0]!.name, ownerOf(bucketOfMac(mac), nodes), mac);
      assert.equal(new Set(servers.map((s) => s.name)).size, 3);
    }
  });

  it('sends nobody to a node that lacks one of the files, and ranks every node when none holds them all', () => {
    const partial = [node('a', 1), node('b', 2, ['debian/linux']), node('c', 3)];
    for (const mac of MACS.slice(0, 300)) {
      const { servers, complete } = bootServersFor(mac, FILES, partial);
      assert.equal(complete, true);
      assert.deepEqual(servers.map((s) => s.name).sort(), ['a', 'c']);
    }
    const none = [node('a', 1, []), node('b', 2, [])];
    const choice = bootServersFor(MACS[0]!, FILES, none);
    assert.equal(choice.complete, false);
    assert.equal(choice.servers.length, 2);
  });

  it('spreads machines by weight', () => {
    const weighted = [node('a', 1, FILES, 100), node('b', 2, FILES, 100), node('c', 3, FILES, 50)];
    const counts = new Map<string, number>();
    for (const mac of MACS) {
      const first = bootServersFor(mac, FILES, weighted).servers[0]!.name;
      counts.set(first, (counts.get(first) ?? 0) + 1);
    }
    // Shares 2/5, 2/5, 1/5 of 256 buckets: within a few buckets' worth of noise.
    const share = (n: string): number => (counts.get(n) ?? 0) / MACS.length;
    assert.ok(Math.abs(share('a') - 0.4) < 0.07 && Math.abs(share('b') - 0.4) < 0.07 && Math.abs(share('c') - 0.2) < 0.07, JSON.stringify([...counts]));
  });

  it('moves only a departed node\'s machines, and gives exactly those back when it returns', () => {
    const before = new Map(MACS.map((m) => [m, bootServersFor(m, FILES, nodes).servers[0]!.name]));
    const without = nodes.filter((n) => n.name !== 'b');
    for (const mac of MACS) {
      const now = bootServersFor(mac, FILES, without).servers[0]!.name;
      if (before.get(mac) !== 'b') assert.equal(now, before.get(mac), `${mac} moved although its node stayed`);
      // A departed node's machines go to what was their first fallback.
      else assert.equal(now, bootServersFor(mac, FILES, nodes).servers[1]!.name);
    }
    for (const mac of MACS) assert.equal(bootServersFor(mac, FILES, nodes).servers[0]!.name, before.get(mac));
  });

  it('names at most `max` servers and skips nodes without an HTTP port', () => {
    assert.equal(bootServersFor(MACS[1]!, FILES, nodes, [], 1).servers.length, 1);
    const noHttp = [{ ...node('a', 1), httpPort: 0 }, node('b', 2)];
    assert.deepEqual(bootServersFor(MACS[1]!, FILES, noHttp).servers.map((s) => s.name), ['b']);
    assert.deepEqual(bootServersFor(MACS[1]!, FILES, []).servers, []);
  });

  it('gives a multi-homed node\'s address on the client\'s network', () => {
    const multi = { addresses: ['192.168.1.5', '10.99.0.7', '10.50.0.7'] };
    assert.equal(addressFor(multi, [parseCidr('10.50.0.0/24')]), '10.50.0.7');
    assert.equal(addressFor(multi, [parseCidr('172.16.0.0/16')]), '192.168.1.5');
    assert.equal(addressFor(multi, []), '192.168.1.5');
  });
});

describe('boot servers of image-backed profiles', () => {
  const V1 = 'a'.repeat(64);
  const V2 = 'b'.repeat(64);
  const live = profile({ name: 'live', image: 'demo@stable', boot: { kind: 'kernel', kernel: 'boot/vmlinuz', initrds: ['boot/initrd.img'] } });
  const imageNode = (name: string, i: number, versions: string[]): BootNodeInfo => ({ ...node(name, i, []), images: new Set(versions) });

  it('needs the pinned paths of the resolved version, and nothing of the artifacts directory', () => {
    assert.deepEqual(profileArtifacts(live, { name: 'demo', version: V1 }), [`images/demo/${V1}/boot/vmlinuz`, `images/demo/${V1}/boot/initrd.img`]);
    assert.deepEqual(profileArtifacts(live), []);
    assert.deepEqual(referencedArtifacts([live], validate<ClusterConfig>(ClusterConfigSchema, {}, 'cluster').boot).filter((r) => r.includes('vmlinuz')), []);
  });

  it('names only nodes whose record lists the version; none when no node holds it', () => {
    const nodes = [imageNode('a', 1, [V1]), imageNode('b', 2, [V2]), imageNode('c', 3, [V1, V2]), node('d', 4, FILES)];
    const needed = profileArtifacts(live, { name: 'demo', version: V1 });
    for (const mac of MACS.slice(0, 50)) {
      const { servers, complete } = bootServersFor(mac, needed, nodes);
      assert.ok(complete);
      assert.deepEqual(servers.map((s) => s.name).sort(), ['a', 'c']);
    }
    // A node that has not caught up (b) is never named, even when nobody else is there.
    const choice = bootServersFor(MACS[0]!, needed, [imageNode('b', 2, [V2]), node('d', 4)]);
    assert.deepEqual(choice, { servers: [], complete: false });
  });
});
