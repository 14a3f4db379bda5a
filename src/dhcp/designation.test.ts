/** RFC 3074 bucket hash and weighted bucket assignment: tables, no I/O. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BUCKETS, bucketOfMac, bucketShares, bucketTable, designate, loadBalanceHash, ownerOf } from './designation.js';

const mac = (n: number): string =>
  ['52', '54', '00', ((n >> 16) & 0xff).toString(16).padStart(2, '0'), ((n >> 8) & 0xff).toString(16).padStart(2, '0'), (n & 0xff).toString(16).padStart(2, '0')].join(':');

describe('RFC 3074 load-balancing hash', () => {
  it('follows loadb_p_hash: starts at the key length, mixes the bytes last to first', () => {
    // Worked by hand from the RFC's table (§6): tbl[0]=251, tbl[1]=175, tbl[2]=119, tbl[3]=215.
    assert.equal(loadBalanceHash(Uint8Array.of()), 0);
    assert.equal(loadBalanceHash(Uint8Array.of(0)), 175); // tbl[1 ^ 0]
    assert.equal(loadBalanceHash(Uint8Array.of(1)), 251); // tbl[1 ^ 1]
    assert.equal(loadBalanceHash(Uint8Array.of(3)), 119); // tbl[1 ^ 3]
    // Two bytes [0, 1]: h = 2; h = tbl[2 ^ 1] = 215; h = tbl[215 ^ 0] = tbl[215].
    const t215 = loadBalanceHash(Uint8Array.of(215 ^ 1)); // tbl[1 ^ (215 ^ 1)] = tbl[215]
    assert.equal(loadBalanceHash(Uint8Array.of(0, 1)), t215);
  });

  it('uses a permutation of 0..255 (every bucket reachable, one byte maps one-to-one)', () => {
    const seen = new Set<number>();
    for (let b = 0; b < 256; b++) seen.add(loadBalanceHash(Uint8Array.of(b)));
    assert.equal(seen.size, 256);
  });

  it('hashes a MAC as its six bytes', () => {
    assert.equal(bucketOfMac('52:54:00:12:34:56'), loadBalanceHash(Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56)));
  });

  it('spreads sequential MACs over the buckets', () => {
    const counts = new Array<number>(BUCKETS).fill(0);
    for (let i = 0; i < 25_600; i++) counts[bucketOfMac(mac(i))]!++;
    assert.ok(Math.min(...counts) > 0, 'every bucket is used');
    assert.ok(Math.max(...counts) < 400, `no bucket gets far more than 100 (max ${Math.max(...counts)})`);
  });
});

describe('weighted bucket assignment (rendezvous hashing)', () => {
  const three = [
    { name: 'a', weight: 100 },
    { name: 'b', weight: 100 },
    { name: 'c', weight: 100 },
  ];

  it('is the same whatever order the members are listed in', () => {
    assert.deepEqual(bucketTable(three), bucketTable([...three].reverse()));
  });

  it('splits equal weights roughly evenly', () => {
    for (const [, n] of bucketShares(three)) assert.ok(n > 60 && n < 110, `share ${n} of 256`);
  });

  it('splits weights 100/50 about 2:1 over all 256 buckets', () => {
    const shares = bucketShares([
      { name: 'fast', weight: 100 },
      { name: 'slow', weight: 50 },
    ]);
    const fast = shares.get('fast')!;
    const slow = shares.get('slow')!;
    assert.equal(fast + slow, 256);
    const ratio = fast / slow;
    assert.ok(ratio > 1.6 && ratio < 2.5, `ratio ${ratio.toFixed(2)} (${fast}/${slow})`);
  });

  it('a leaving member loses only its own buckets, and gets exactly those back when it returns', () => {
    const before = bucketTable(three);
    const without = bucketTable(three.filter((m) => m.name !== 'b'));
    for (let bucket = 0; bucket < BUCKETS; bucket++) {
      if (before[bucket] !== 'b') assert.equal(without[bucket], before[bucket], `bucket ${bucket} moved though its owner stayed`);
      else assert.notEqual(without[bucket], 'b');
    }
    assert.deepEqual(bucketTable(three), before, 'rebalancing on return moves back only b’s share');
  });

  it('weight 0 takes no bucket while another member has weight', () => {
    const shares = bucketShares([
      { name: 'a', weight: 100 },
      { name: 'drain', weight: 0 },
    ]);
    assert.equal(shares.get('drain'), 0);
    assert.equal(ownerOf(7, [{ name: 'drain', weight: 0 }]), 'drain', 'a lone member owns everything');
  });
});

describe('who answers', () => {
  const members = [
    { name: 'a', weight: 100 },
    { name: 'b', weight: 100 },
  ];
  const clientOf = (owner: string): string => {
    for (let i = 0; ; i++) if (ownerOf(bucketOfMac(mac(i)), members) === owner) return mac(i);
  };

  it('decision table', () => {
    const ofA = clientOf('a');
    const rows: [string, string, number, { name: string; weight: number }[], boolean][] = [
      ['designated', 'a', 0, members, true],
      ['not designated', 'b', 0, members, false],
      ['not designated, secs below threshold', 'b', 2, members, false],
      ['not designated, secs at threshold', 'b', 3, members, true],
      ['designated node down (not a member)', 'b', 0, [{ name: 'b', weight: 100 }], true],
      ['this node alone', 'a', 0, [{ name: 'a', weight: 100 }], true],
      ['no member view at all', 'b', 0, [], true],
    ];
    for (const [label, self, secs, view, answer] of rows) {
      const d = designate(ofA, secs, { self, members: view, takeoverSecs: 3 });
      assert.equal(d.answer, answer, label);
    }
  });

  it('takeoverSecs 0 disables the secs rule', () => {
    assert.equal(designate(clientOf('a'), 60, { self: 'b', members, takeoverSecs: 0 }).answer, false);
  });
});
