import { api } from '../api.js';
import { ago, badge, confirmDialog, h, mount, toast } from '../dom.js';
import type { Page } from '../main.js';

interface MachineRow {
  name?: string;
  mac?: string;
  known: boolean;
  hostname?: string;
  profile?: string;
  profileSource: string;
  status?: { lastStage?: string; lastStageMs?: number; lastNode?: string; installedAtMs?: number; firstSeenMs: number; facts?: { arch?: string; ip?: string } };
  lease?: { ip: string; subnet: string; state: string; expiresAtMs: number; node: string };
  server?: string;
  fallbacks?: string[];
}

const STAGES = ['dhcp', 'tftp', 'script', 'kernel', 'done'];
let query = '';

function matches(m: MachineRow, q: string): boolean {
  if (!q) return true;
  const needle = q.toLowerCase();
  // A MAC may be typed with dashes (52-54-00-…).
  const macNeedle = /^[0-9a-f]{2}(-[0-9a-f]{2})+$/.test(needle) ? needle.replace(/-/g, ':') : needle;
  return [m.name, m.hostname, m.lease?.ip, m.status?.facts?.ip, m.profile].some((v) => v?.toLowerCase().includes(needle)) || Boolean(m.mac?.includes(macNeedle));
}

export const machinesPage: Page = {
  title: 'Machines',
  reloadOn: ['machine-stage', 'leases', 'node-up', 'node-down', 'placement', 'override'],
  pollMs: 10_000,
  async load(root) {
    const data = await api<{ machines: MachineRow[]; profiles: string[] }>('/api/v1/dashboard/machines');
    const reload = (): void => void machinesPage.load(root);
    const table = h('tbody', {});
    const count = h('span', { class: 'sub', 'data-testid': 'machine-count' });
    const draw = (): void => {
      const rows = data.machines.filter((m) => matches(m, query));
      count.textContent = `${rows.length} of ${data.machines.length} machines`;
      mount(table, ...(rows.length ? rows.map((m) => row(m, data.profiles, reload)) : [h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No machine matches.'))]));
    };
    const search = h('input', {
      type: 'search',
      placeholder: 'Search by MAC, name or IP',
      value: query,
      'data-testid': 'machine-search',
      oninput: (e: Event) => {
        query = (e.target as HTMLInputElement).value.trim();
        draw();
      },
    });
    draw();
    // Keep the focus and caret of the search box across reloads.
    const had = document.activeElement === root.querySelector('input[type=search]');
    mount(
      root,
      h('div', { class: 'page-head' }, h('h1', {}, 'Machines'), h('span', { class: 'spacer' }), search, count),
      h(
        'table',
        { class: 'grid', 'data-testid': 'machines' },
        h('thead', {}, h('tr', {}, ...['Machine', 'MAC', 'IP', 'Profile', 'Last stage', 'Served by', 'Boot server', ''].map((t) => h('th', {}, t)))),
        table,
      ),
    );
    if (had) search.focus();
  },
};

function stageBadge(stage: string | undefined): HTMLElement {
  if (!stage) return badge('never booted', 'muted');
  const i = STAGES.indexOf(stage);
  return h('span', { class: 'stages', title: stage }, ...STAGES.map((s, k) => h('i', { class: k <= i ? (stage === 'done' ? 'on done' : 'on') : '' })), h('b', {}, stage));
}

function row(m: MachineRow, profiles: string[], reload: () => void): HTMLElement {
  const reprovision = async (): Promise<void> => {
    if (!m.name) return;
    const ok = await confirmDialog({
      title: `Reprovision ${m.name}?`,
      message: `${m.name} installs again on its next network boot (its install-once record is cleared).`,
      confirm: 'Reprovision',
      danger: true,
    });
    if (ok === undefined) return;
    try {
      await api(`/api/v1/machines/${encodeURIComponent(m.name)}/reprovision`, { method: 'POST' });
      toast(`${m.name} will reinstall on its next boot`);
    } catch (err) {
      toast(`reprovision failed: ${(err as Error).message}`, 'error');
    }
    reload();
  };
  const changeProfile = async (): Promise<void> => {
    if (!m.name) return;
    const value = await confirmDialog({
      title: `Change the profile of ${m.name}`,
      message: 'The machine boots the chosen profile from its next boot on. "(selector or default)" lets label selectors or the cluster default decide.',
      confirm: 'Change profile',
      input: { label: 'Profile', value: m.profileSource === 'machine' ? (m.profile ?? '') : '', options: ['', ...profiles] },
    });
    if (value === undefined) return;
    try {
      await api(`/api/v1/machines/${encodeURIComponent(m.name)}/profile`, { method: 'PUT', body: { profile: value || null } });
      toast(`${m.name} now boots ${value || 'its selector or default profile'}`);
    } catch (err) {
      toast(`profile change failed: ${(err as Error).message}`, 'error');
    }
    reload();
  };
  const s = m.status;
  return h(
    'tr',
    { 'data-testid': `machine-${m.mac ?? m.name}` },
    h('td', {}, m.name ? h('strong', {}, m.name) : badge('discovered', 'muted'), m.hostname ? h('div', { class: 'sub' }, m.hostname) : null),
    h('td', { class: 'mono' }, m.mac ?? '—'),
    h('td', { class: 'mono' }, m.lease?.ip ?? s?.facts?.ip ?? '—', m.lease ? h('div', { class: 'sub' }, `${m.lease.state} · ${m.lease.subnet}`) : s?.facts?.ip ? h('div', { class: 'sub' }, 'its last boot request') : null),
    h('td', {}, m.profile ?? '—', m.profile && m.profileSource !== 'machine' ? h('div', { class: 'sub' }, m.profileSource) : null, s?.installedAtMs ? badge('installed', 'ok') : null),
    h('td', { 'data-testid': `stage-${m.mac ?? m.name}` }, stageBadge(s?.lastStage), s?.lastStageMs ? h('div', { class: 'sub' }, ago(s.lastStageMs)) : null),
    h('td', {}, s?.lastNode ?? '—'),
    h('td', {}, m.server ?? '—', m.fallbacks?.length ? h('div', { class: 'sub' }, `then ${m.fallbacks.join(', ')}`) : null),
    h(
      'td',
      {},
      m.known
        ? h(
            'div',
            { class: 'row-actions' },
            h('button', { class: 'small ghost', onclick: () => void changeProfile(), 'data-testid': `profile-${m.name}` }, 'Profile…'),
            h('button', { class: 'small ghost', onclick: () => void reprovision(), 'data-testid': `reprovision-${m.name}` }, 'Reprovision'),
          )
        : null,
    ),
  );
}
