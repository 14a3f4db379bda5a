import { api } from '../api.js';
import { h, mount } from '../dom.js';
import type { Page } from '../main.js';

type Stage = 'dhcp' | 'tftp' | 'script' | 'kernel' | 'done';
interface Funnel {
  stages: Stage[];
  minutes: { minuteMs: number; counts: Record<Stage, number> }[];
  stopped: Record<Stage, number>;
  machines: number;
}

const LABEL: Record<Stage, string> = { dhcp: 'DHCP', tftp: 'TFTP', script: 'Script', kernel: 'Kernel', done: 'Done' };
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Stacked columns per minute: one colour per stage. */
function chart(f: Funnel, minutes: number): SVGElement {
  const data = f.minutes.slice(-minutes);
  const W = 900;
  const H = 180;
  const pad = 28;
  // An even top, so the middle gridline is a whole number.
  const peak = Math.max(2, ...data.map((m) => f.stages.reduce((a, s) => a + m.counts[s], 0)));
  const max = peak % 2 === 0 ? peak : peak + 1;
  const bw = (W - pad) / data.length;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H + 22}`, class: 'chart', 'data-testid': 'funnel-chart' });
  for (const frac of [0, 0.5, 1]) {
    const y = H - frac * (H - 10);
    root.append(svg('line', { x1: pad, x2: W, y1: y, y2: y, class: 'gridline' }), svg('text', { x: pad - 4, y: y + 4, class: 'axis', 'text-anchor': 'end' }, String(frac * max)));
  }
  data.forEach((m, i) => {
    let y = H;
    for (const s of f.stages) {
      const v = m.counts[s];
      if (!v) continue;
      const hgt = (v / max) * (H - 10);
      y -= hgt;
      const r = svg('rect', { x: pad + i * bw + 1, y, width: Math.max(1, bw - 2), height: hgt, class: `s-${s}` });
      r.append(svg('title', {}, `${new Date(m.minuteMs).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })} ${LABEL[s]}: ${v}`));
      root.append(r);
    }
    if (i % 10 === 0 || i === data.length - 1) {
      const last = i === data.length - 1;
      root.append(svg('text', { x: last ? W : pad + i * bw + bw / 2, y: H + 16, class: 'axis', 'text-anchor': last ? 'end' : 'middle' }, new Date(m.minuteMs).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hour12: false })));
    }
  });
  return root;
}

export const funnelPage: Page = {
  title: 'Boot funnel',
  reloadOn: ['machine-stage', 'leases'],
  pollMs: 15_000,
  async load(root) {
    const f = await api<Funnel>('/api/v1/dashboard/funnel');
    const totals = Object.fromEntries(f.stages.map((s) => [s, f.minutes.reduce((a, m) => a + m.counts[s], 0)])) as Record<Stage, number>;
    const top = Math.max(1, ...Object.values(totals));
    const stopTop = Math.max(1, ...Object.values(f.stopped));
    mount(
      root,
      h('div', { class: 'page-head' }, h('h1', {}, 'Boot funnel'), h('span', { class: 'spacer' }), h('span', { class: 'sub' }, 'last 60 minutes, as this node saw them')),
      h(
        'div',
        { class: 'panel' },
        h('h2', {}, 'Stages reached per minute'),
        chart(f, 60),
        h('div', { class: 'legend' }, ...f.stages.map((s) => h('span', {}, h('i', { class: `s-${s}` }), LABEL[s]))),
      ),
      h(
        'div',
        { class: 'two' },
        h(
          'div',
          { class: 'panel', 'data-testid': 'funnel-totals' },
          h('h2', {}, 'Reached, last hour'),
          ...f.stages.map((s) =>
            h('div', { class: 'hbar', 'data-testid': `reached-${s}`, 'data-count': totals[s] }, h('span', { class: 'label' }, LABEL[s]), h('div', { class: 'bar' }, h('div', { class: `fill s-${s}`, style: `width:${((100 * totals[s]) / top).toFixed(1)}%` })), h('span', { class: 'num' }, String(totals[s]))),
          ),
        ),
        h(
          'div',
          { class: 'panel', 'data-testid': 'funnel-stopped' },
          h('h2', {}, 'Where machines are now'),
          h('p', { class: 'sub' }, `Last stage reached by each of ${f.machines} machines (a lease without any boot request counts as DHCP).`),
          ...f.stages.map((s) =>
            h('div', { class: 'hbar', 'data-testid': `stopped-${s}`, 'data-count': f.stopped[s] }, h('span', { class: 'label' }, LABEL[s]), h('div', { class: 'bar' }, h('div', { class: `fill s-${s}`, style: `width:${((100 * f.stopped[s]) / stopTop).toFixed(1)}%` })), h('span', { class: 'num' }, String(f.stopped[s]))),
          ),
        ),
      ),
    );
  },
};
