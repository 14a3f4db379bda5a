/**
 * Fault-suite figures (issue 8) that are measured, printed and never asserted:
 *
 *  - the figures the last suite run wrote (test-artifacts/faults/figures-<form>.json: takeover
 *    after kill -9, renewal gaps, leases/s per fault, boot success), printed as a table;
 *  - time for a restarted node to serve again with N lease records in the store (default
 *    100 000): a 3-node HA lab (test/helpers/ha-lab.ts, namespaces), node1 restarted after
 *    kill -9 on an empty lease store, then the store preloaded with N bound records (etcd
 *    transactions of 100 puts, 8 in flight, in a subnet no client uses) and node1 restarted
 *    again. "Serving" = `dhcp listening` logged, and the first ACK node1 sends to a fresh
 *    client of its own bucket (clients added every 250 ms, bounded).
 *
 * Usage: npm run faults:figures -- [--leases 100000] [--form short|long] [--no-restart]
 * Bounded: every wait has a deadline; all namespaces and processes go at the end (Sandbox).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { bucketOfMac, DEFAULT_WEIGHT, ownerOf } from '../../src/dhcp/designation.js';
import { formatFigures, NODE_NAMES, RENEW_ADDRESS, RenewingClients, type Figures } from '../helpers/faults-lab.js';
import { defaultHaCluster, HaLab } from '../helpers/ha-lab.js';
import { REPO_ROOT, Sandbox, srcUrl } from '../helpers/netns.js';

const { values } = parseArgs({
  options: {
    leases: { type: 'string', default: '100000' },
    form: { type: 'string' },
    'no-restart': { type: 'boolean', default: false },
  },
});

for (const form of values.form ? [values.form] : ['short', 'long']) {
  const file = path.join(REPO_ROOT, 'test-artifacts', 'faults', `figures-${form}.json`);
  if (existsSync(file)) console.log(formatFigures(JSON.parse(readFileSync(file, 'utf8')) as Figures));
  else console.log(`(no ${form}-form figures yet: run the suite, e.g. ${form === 'long' ? 'PXEHA_FAULTS=long ' : ''}npm run test:faults)`);
}

if (!values['no-restart']) await restartFigures(Number(values.leases));

async function restartFigures(count: number): Promise<void> {
  const sandbox = new Sandbox();
  let lab: HaLab | undefined;
  try {
    const base = defaultHaCluster() as { subnets: Array<Record<string, unknown>> };
    // A second subnet only the preloaded records use: 131 072 addresses, no client is ever in it.
    const cluster = { ...base, subnets: [...base.subnets, { name: 'bulk', subnet: '10.100.0.0/15', mode: 'full', pools: [{ start: '10.100.0.0', end: '10.101.255.255' }], leaseSeconds: 3600 }] };
    const ha = (lab = await HaLab.start(sandbox, { nodes: 3, clients: 1, clientAddresses: [`${RENEW_ADDRESS}/16`], cluster }));
    const clients = await RenewingClients.start(ha.clients[0]!, ha.nodes.map((n) => n.ip), { renewMs: 60_000 });
    let seq = 0;
    const members = NODE_NAMES.map((name) => ({ name, weight: DEFAULT_WEIGHT }));
    const freshMacOf = (owner: string): string => {
      for (;;) {
        const n = ++seq;
        const mac = `02:61:00:${(n >> 16).toString(16).padStart(2, '0')}:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
        if (ownerOf(bucketOfMac(mac), members) === owner) return mac;
      }
    };
    /** kill -9 of node1, start again: ms to 'dhcp listening' and to its first ACK of a fresh client of its bucket. */
    const restart = async (): Promise<string> => {
      await ha.kill(0);
      await sleep(3000); // its membership lapses: the others own its bucket meanwhile
      const t0 = Date.now();
      const starting = ha.nodes[0]!.start(300_000);
      let listeningMs: number | undefined;
      let failed: string | undefined;
      void starting.then(
        () => (listeningMs = Date.now() - t0),
        (err: Error) => (failed = /error PXE_ERR\S+: [^\n]*/.exec(err.message)?.[0] ?? err.message.split('\n')[0]),
      );
      const deadline = t0 + 300_000;
      while (Date.now() < deadline) {
        if (failed) return `node1 FAILED to start after ${Date.now() - t0} ms: ${failed}`;
        const mac = freshMacOf('node1');
        clients.add(mac);
        const ack = await clients.waitAck(mac, t0, 250).catch(() => undefined);
        if (ack?.server === ha.nodes[0]!.ip) {
          await starting;
          return `dhcp listening after ${listeningMs} ms; first ACK of its own client after ${ack.t - t0} ms`;
        }
      }
      return 'node1 did not serve within 300 s';
    };
    console.log(`restart with an empty lease store: ${await restart()}`);
    const started = Date.now();
    await preload(ha, count);
    console.log(`preloaded ${count} lease records in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    console.log(`restart with ${count} lease records in the store: ${await restart()}`);
    await clients.stop();
  } finally {
    await lab?.cleanup();
    await sandbox.cleanup();
  }
}

/** N bound records in subnet 'bulk', written by a script in node1's namespace (transactions of 100 puts, 8 at once). */
async function preload(ha: HaLab, count: number): Promise<void> {
  const source = `
import { openStore } from ${JSON.stringify(srcUrl('src/store/open.ts'))};
const store = await openStore({ kind: 'etcd', endpoints: ${JSON.stringify(ha.etcdEndpoints)}, requestTimeoutMs: 30000 });
const now = Date.now();
const ipOf = (n) => '10.' + (100 + (n >> 16)) + '.' + ((n >> 8) & 255) + '.' + (n & 255);
const macOf = (n) => '02:62:00:' + [n >> 16, (n >> 8) & 255, n & 255].map((x) => x.toString(16).padStart(2, '0')).join(':');
let next = 0;
async function worker() {
  while (next < ${count}) {
    const from = next; next = Math.min(${count}, next + 100);
    const success = [];
    for (let n = from; n < next; n++) {
      const ip = ipOf(n), mac = macOf(n);
      success.push({ type: 'put', key: '/pxeha/leases/bulk/' + ip, value: JSON.stringify({ ip, subnet: 'bulk', state: 'bound', clientKey: 'mac:' + mac, mac, expiresAtMs: now + 3600000, node: 'node2', boundAtMs: now }) });
    }
    await store.txn({ compare: [], success, failure: [] });
  }
}
await Promise.all(Array.from({ length: 8 }, worker));
await store.close();
console.log('preloaded');
process.exit(0);
`;
  const proc = ha.lab.servers[0]!.spawnNodeScript(source, { label: 'lease preload' });
  await proc.waitForLine(/^preloaded$/, { timeoutMs: 600_000 });
}
