import { api } from '../api.js';
import { badge, clock, h, mount } from '../dom.js';
import type { Page } from '../main.js';

interface Pool {
  start: string;
  end: string;
  size: number;
  bound: number;
  offered: number;
  declined: number;
}
interface Lease {
  ip: string;
  mac: string;
  state: string;
  hostname?: string;
  expiresAtMs: number;
  node: string;
}
interface Subnet {
  name: string;
  subnet: string;
  mode: string;
  pools: Pool[];
  reservations: number;
  leases: Lease[];
}

const pct = (n: number, of: number): number => (of > 0 ? (100 * n) / of : 0);
const pctText = (n: number, of: number): string => {
  const p = pct(n, of);
  return p > 0 && p < 0.1 ? '<0.1%' : `${p.toFixed(p < 10 ? 1 : 0)}%`;
};

export const leasesPage: Page = {
  title: 'Leases',
  reloadOn: ['leases'],
  pollMs: 10_000,
  async load(root) {
    const data = await api<{ subnets: Subnet[] }>('/api/v1/dashboard/leases');
    mount(
      root,
      h('div', { class: 'page-head' }, h('h1', {}, 'Leases')),
      data.subnets.length === 0 ? h('p', { class: 'empty' }, 'No subnet is configured.') : null,
      ...data.subnets.map((s) => {
        const size = s.pools.reduce((a, p) => a + p.size, 0);
        const used = s.pools.reduce((a, p) => a + p.bound + p.offered + p.declined, 0);
        return h(
          'div',
          { class: 'panel', 'data-testid': `subnet-${s.name}` },
          h('div', { class: 'panel-head' }, h('h2', {}, s.name), h('span', { class: 'mono' }, s.subnet), badge(s.mode, 'muted'), h('span', { class: 'spacer' }), h('span', { class: 'sub' }, `${used} of ${size} pool addresses in use (${pctText(used, size)}) · ${s.reservations} reservations`)),
          s.pools.length === 0 ? h('p', { class: 'sub' }, 'No pools (reservations only, or proxy mode).') : null,
          ...s.pools.map((p) =>
            h(
              'div',
              { class: 'pool', 'data-testid': `pool-${s.name}-${p.start}` },
              h('span', { class: 'mono range' }, `${p.start} – ${p.end}`),
              h(
                'div',
                { class: 'util' },
                // At least a sliver for anything in use, so a few leases in a big pool still show.
                ...(['bound', 'offered', 'declined'] as const).map((k) => (p[k] > 0 ? h('div', { class: `seg ${k}`, style: `width:max(3px,${pct(p[k], p.size).toFixed(2)}%)`, title: `${p[k]} ${k}` }) : null)),
              ),
              h('span', { class: 'util-text', 'data-testid': `util-${s.name}-${p.start}` }, `${p.bound} bound · ${p.offered} offered · ${p.declined} declined / ${p.size} (${pctText(p.bound + p.offered + p.declined, p.size)})`),
            ),
          ),
          h(
            'table',
            { class: 'grid compact' },
            h('thead', {}, h('tr', {}, ...['Address', 'MAC', 'State', 'Hostname', 'Expires', 'Written by'].map((t) => h('th', {}, t)))),
            h(
              'tbody',
              {},
              ...(s.leases.length
                ? s.leases.map((l) =>
                    h('tr', { 'data-testid': `lease-${l.ip}` }, h('td', { class: 'mono' }, l.ip), h('td', { class: 'mono' }, l.mac), h('td', {}, badge(l.state, l.state === 'bound' ? 'ok' : l.state === 'declined' ? 'bad' : 'warn')), h('td', {}, l.hostname ?? '—'), h('td', {}, clock(l.expiresAtMs)), h('td', {}, l.node)),
                  )
                : [h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No active lease.'))]),
            ),
          ),
        );
      }),
    );
  },
};
