import { api } from '../api.js';
import { ago, badge, bytes, confirmDialog, h, mount, toast } from '../dom.js';
import type { Page } from '../main.js';

interface DashNode {
  name: string;
  state: 'up' | 'down' | 'degraded';
  reachable?: boolean;
  reason?: string;
  leader: boolean;
  addresses: string[];
  httpPort: number;
  version: string;
  weight: number;
  drained: boolean;
  override?: { weight?: number; drained?: boolean };
  configRevision: number;
  behind: boolean;
  clockOffsetMs?: number;
  load?: { loadAvg1: number; rssBytes: number; leaseRecords: number };
  downSinceMs?: number;
  placed?: boolean;
  buckets?: number;
  machines?: number;
  drift: string[];
}

interface DashCluster {
  observer: string;
  observedAtMs: number;
  leader?: string;
  configRevision: number;
  clockSkewMs?: number;
  clockSkewThresholdMs: number;
  store: { kind: string; reachable: boolean; revision?: number; error?: string };
  degraded: boolean;
  warnings: string[];
  clustered: boolean;
  placement?: { mode: string; record?: { members: string[]; atMs: number; by: string } };
  nodes: DashNode[];
}

const TOTAL_BUCKETS = 256;

async function action(label: string, run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
    toast(label);
  } catch (err) {
    toast(`${label} failed: ${(err as Error).message}`, 'error');
  }
}

function nodeActions(n: DashNode, reload: () => void): HTMLElement {
  const drain = async (): Promise<void> => {
    const undrain = n.drained;
    const ok = await confirmDialog({
      title: `${undrain ? 'Undrain' : 'Drain'} ${n.name}?`,
      message: undrain
        ? `${n.name} takes new clients again, with weight ${n.override?.weight ?? 'as configured'}.`
        : `${n.name} stops taking new clients: its weight becomes 0 and its DHCP buckets go to the other nodes. Clients it serves keep their leases.`,
      confirm: undrain ? 'Undrain' : 'Drain',
      danger: !undrain,
    });
    if (ok === undefined) return;
    await action(`${n.name} ${undrain ? 'undrained' : 'drained'}`, () => api(`/api/v1/nodes/${encodeURIComponent(n.name)}/${undrain ? 'undrain' : 'drain'}`, { method: 'POST' }));
    reload();
  };
  const weight = async (): Promise<void> => {
    const value = await confirmDialog({
      title: `Set the weight of ${n.name}`,
      message: 'A node takes a share of the clients proportional to its weight (0–10000; 0 takes none while another node has a positive weight).',
      confirm: 'Set weight',
      input: { label: 'Weight', value: String(n.override?.weight ?? n.weight), type: 'number' },
    });
    if (value === undefined) return;
    const w = Number(value);
    if (!Number.isInteger(w) || w < 0 || w > 10000) return toast('The weight must be an integer from 0 to 10000', 'error');
    await action(`weight of ${n.name} set to ${w}`, () => api(`/api/v1/nodes/${encodeURIComponent(n.name)}/weight`, { method: 'PUT', body: { weight: w } }));
    reload();
  };
  return h(
    'div',
    { class: 'row-actions' },
    h('button', { class: 'small', 'data-testid': `drain-${n.name}`, onclick: () => void drain(), disabled: n.state === 'down' }, n.drained ? 'Undrain' : 'Drain'),
    h('button', { class: 'small ghost', 'data-testid': `weight-${n.name}`, onclick: () => void weight(), disabled: n.state === 'down' }, 'Weight…'),
  );
}

export const clusterPage: Page = {
  title: 'Cluster',
  reloadOn: ['node-up', 'node-down', 'node-changed', 'takeover', 'leader', 'override', 'placement', 'self'],
  pollMs: 2000,
  async load(root) {
    const c = await api<DashCluster>('/api/v1/dashboard/cluster');
    const reload = (): void => void clusterPage.load(root);
    const up = c.nodes.filter((n) => n.state === 'up').length;
    const rebalance = async (): Promise<void> => {
      const ok = await confirmDialog({
        title: 'Rebalance the cluster?',
        message: 'Every healthy node takes its share of the machines again (in manual placement mode, nodes that came back start serving). Machines whose boot server changes are listed afterwards.',
        confirm: 'Rebalance',
      });
      if (ok === undefined) return;
      await action('rebalanced', async () => {
        const r = await api<{ moved: unknown[] }>('/api/v1/cluster/rebalance', { method: 'POST' });
        toast(`rebalanced: ${r.moved.length} machine(s) move`);
      });
      reload();
    };
    mount(
      root,
      h(
        'div',
        { class: 'page-head' },
        h('h1', {}, 'Cluster'),
        h('span', { class: 'spacer' }),
        c.clustered ? h('button', { class: 'primary', 'data-testid': 'rebalance', onclick: () => void rebalance() }, 'Rebalance…') : null,
      ),
      h(
        'div',
        { class: 'cards' },
        card('Nodes', `${up} / ${c.nodes.length} up`, c.nodes.length - up > 0 ? 'warn' : 'ok', 'card-nodes'),
        card('Leader', c.leader ?? 'none', c.leader ? 'ok' : 'warn', 'card-leader'),
        card('Config revision', String(c.configRevision), c.nodes.some((n) => n.behind) ? 'warn' : 'ok'),
        card('Clock skew', c.clockSkewMs !== undefined ? `${c.clockSkewMs} ms` : '—', (c.clockSkewMs ?? 0) > c.clockSkewThresholdMs ? 'warn' : 'ok', undefined, `threshold ${c.clockSkewThresholdMs} ms`),
        card('Store', `${c.store.kind} ${c.store.reachable ? `r${c.store.revision ?? ''}` : 'unreachable'}`, c.store.reachable ? 'ok' : 'bad'),
        card('Placement', c.placement?.mode ?? 'single node', 'ok', undefined, c.placement?.record ? `${c.placement.record.by} ${ago(c.placement.record.atMs)}` : undefined),
      ),
      c.degraded ? h('div', { class: 'error' }, `${c.observer} cannot reach the store: this view may be stale.`) : null,
      c.warnings.length ? h('ul', { class: 'warnings', 'data-testid': 'warnings' }, ...c.warnings.map((w) => h('li', {}, w))) : null,
      h(
        'table',
        { class: 'grid', 'data-testid': 'nodes' },
        h('thead', {}, h('tr', {}, ...['Node', 'State', 'Address', 'Weight', 'DHCP share', 'Machines', 'Config', 'Clock', 'Load', ''].map((t) => h('th', {}, t)))),
        h(
          'tbody',
          {},
          ...c.nodes.map((n) =>
            h(
              'tr',
              { 'data-testid': `node-${n.name}`, 'data-state': n.state, class: n.state },
              h('td', {}, h('strong', {}, n.name), n.leader ? badge('leader', 'info', `leader-${n.name}`) : null, n.name === c.observer ? badge('this node', 'muted') : null),
              h(
                'td',
                {},
                badge(n.state, n.state === 'up' ? 'ok' : n.state === 'degraded' ? 'warn' : 'bad', `state-${n.name}`),
                n.state === 'down' && n.downSinceMs ? h('div', { class: 'sub' }, `went down ${ago(n.downSinceMs)}`) : null,
                n.reason ? h('div', { class: 'sub' }, n.reason) : null,
              ),
              h('td', { class: 'mono' }, n.addresses.map((a) => `${a}:${n.httpPort}`).join(', ') || '—', h('div', { class: 'sub' }, `v${n.version}`)),
              h('td', { 'data-testid': `weight-value-${n.name}` }, String(n.weight), n.drained ? badge('drained', 'warn', `drained-${n.name}`) : null, n.override?.weight !== undefined && !n.drained ? badge('override', 'muted') : null),
              h('td', {}, n.buckets !== undefined ? share(n.buckets, n.name) : '—'),
              h('td', {}, n.machines !== undefined ? String(n.machines) : '—'),
              h('td', { class: n.behind ? 'flag' : '' }, `r${n.configRevision}`, n.behind ? badge('behind', 'warn') : null),
              h('td', { class: n.drift.some((d) => d.startsWith('clock')) ? 'flag' : '' }, n.clockOffsetMs !== undefined ? `${n.clockOffsetMs > 0 ? '+' : ''}${n.clockOffsetMs} ms` : '—'),
              h('td', {}, n.load ? `${n.load.loadAvg1.toFixed(2)}` : '—', n.load ? h('div', { class: 'sub' }, `${bytes(n.load.rssBytes)} · ${n.load.leaseRecords} leases`) : null),
              h('td', {}, nodeActions(n, reload)),
            ),
          ),
        ),
      ),
      c.nodes.some((n) => n.drift.length)
        ? h(
            'div',
            { class: 'drift', 'data-testid': 'drift' },
            h('h3', {}, 'Drift'),
            h('ul', {}, ...c.nodes.flatMap((n) => n.drift.map((d) => h('li', {}, `${n.name}: ${d}`)))),
          )
        : null,
      h('p', { class: 'sub' }, `As seen by ${c.observer}, ${new Date(c.observedAtMs).toLocaleTimeString()}.`),
    );
  },
};

function card(title: string, value: string, kind: string, testid?: string, sub?: string): HTMLElement {
  return h('div', { class: `card ${kind}`, ...(testid ? { 'data-testid': testid } : {}) }, h('div', { class: 'card-title' }, title), h('div', { class: 'card-value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);
}

function share(buckets: number, name: string): HTMLElement {
  const pct = (100 * buckets) / TOTAL_BUCKETS;
  return h(
    'div',
    { class: 'share', 'data-testid': `buckets-${name}`, 'data-buckets': buckets },
    h('div', { class: 'bar' }, h('div', { class: 'fill', style: `width:${pct.toFixed(1)}%` })),
    h('span', {}, `${buckets} buckets (${pct.toFixed(0)}%)`),
  );
}
