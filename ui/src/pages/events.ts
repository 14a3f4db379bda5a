import { events } from '../api.js';
import { clock, h, mount } from '../dom.js';
import type { Page } from '../main.js';

let filter = 'cluster';
const CLUSTER_KINDS = new Set(['node-up', 'node-down', 'node-changed', 'takeover', 'leader', 'override', 'placement', 'self']);

function draw(root: HTMLElement): void {
  const shown = events.filter((e) => filter === 'all' || (filter === 'cluster' ? CLUSTER_KINDS.has(e.kind) : e.kind === filter)).slice(-300).reverse();
  const select = h(
    'select',
    {
      'data-testid': 'event-filter',
      onchange: (e: Event) => {
        filter = (e.target as HTMLSelectElement).value;
        draw(root);
      },
    },
    ...[
      ['cluster', 'Cluster events'],
      ['all', 'Everything'],
      ['machine-stage', 'Boot stages'],
      ['leases', 'Lease changes'],
      ['images', 'Image changes'],
    ].map(([v, t]) => h('option', { value: v!, selected: v === filter }, t!)),
  );
  mount(
    root,
    h('div', { class: 'page-head' }, h('h1', {}, 'Events'), h('span', { class: 'spacer' }), select, h('span', { class: 'sub' }, `${events.length} received since this page was opened`)),
    h(
      'ol',
      { class: 'events', 'data-testid': 'events' },
      ...(shown.length
        ? shown.map((e) => h('li', { class: `sev-${e.severity}`, 'data-kind': e.kind }, h('time', {}, clock(e.atMs)), h('span', { class: 'kind' }, e.kind), h('span', { class: 'msg' }, e.message)))
        : [h('li', { class: 'empty' }, 'Nothing yet: events appear here as they happen.')]),
    ),
  );
}

export const eventsPage: Page = {
  title: 'Events',
  async load(root) {
    draw(root);
  },
  onEvent(root) {
    draw(root);
  },
};
