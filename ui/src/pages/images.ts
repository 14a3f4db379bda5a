/**
 * Images: per image, its channels (with set version, promote and rollback) and the replication
 * matrix, version × node: held, copying n%, missing or not placed (GET /api/v1/images, as
 * `pxeha images status`). Reloads on `images` events (a version published, a channel moved, a
 * node holding a version) and every 2 s while shown: copying progress is the answering node's
 * own and is not in the store, so no event carries it.
 *
 * Channel changes are compare-and-set on the revision the page showed when the dialog opened:
 * if someone changed the channel meanwhile the API answers 409 and the page says so.
 */
import { api, ApiError } from '../api.js';
import { ago, badge, bytes, confirmDialog, h, mount, toast } from '../dom.js';
import type { Page } from '../main.js';

/** 'held' | 'copying' (with percent) | 'missing' | 'not placed' (src/images/status.ts). */
interface Holding {
  state: string;
  percent?: number;
}

interface MatrixVersion {
  name: string;
  id: string;
  publishedAtMs: number;
  bytes: number;
  files: number;
  channels: string[];
  holders: Record<string, Holding>;
}

interface Matrix {
  observer: string;
  nodes: string[];
  versions: MatrixVersion[];
  window?: { start: string; end: string; open: boolean; waiting: boolean };
}

interface Channel {
  channel: string;
  version: string;
  history: string[];
  changedAtMs: number;
  change: string;
  modRevision: number;
}

interface ImageDetail {
  name: string;
  versions: { id: string; publishedAtMs: number; note?: string; bytes: number; channels: string[] }[];
  channels: Channel[];
  placement?: unknown;
}

const short = (id: string): string => id.slice(0, 12);

/** The last action's failure, kept across reloads until dismissed or replaced. */
let failure: { message: string; atMs: number } | undefined;
const FAILURE_SHOWN_MS = 60_000;

function explain(label: string, err: unknown, subject: string): string {
  if (err instanceof ApiError) {
    if (err.status === 409) return `Conflict — ${label} not done: ${subject} was changed by someone else since this page showed it (${err.message}). The page shows it as it is now; check and try again.`;
    if (err.status === 403) return `Not allowed — ${label} needs an operator token; the token in use may only read (${err.message}). Paste an operator token with the Token button.`;
    if (err.status === 401) return `Not signed in — ${label} needs an operator token (${err.message}). Paste one with the Token button.`;
  }
  return `${label} failed: ${(err as Error).message}`;
}

async function act(label: string, subject: string, run: () => Promise<unknown>, reload: () => void): Promise<void> {
  try {
    await run();
    failure = undefined;
    toast(label);
  } catch (err) {
    failure = { message: explain(label, err, subject), atMs: Date.now() };
    toast(`${label}: not done (${err instanceof ApiError ? err.status : 'error'})`, 'error');
  }
  reload();
}

const path = (image: string, ...rest: string[]): string => `/api/v1/images/${[image, ...rest].map(encodeURIComponent).join('/')}`;

function channelActions(image: ImageDetail, c: Channel, reload: () => void): HTMLElement {
  const id = `${image.name}-${c.channel}`;
  const subject = `${image.name}@${c.channel}`;
  const setVersion = async (): Promise<void> => {
    const base = c.modRevision;
    const value = await confirmDialog({
      title: `Point ${subject} at another version?`,
      message: `Machines booting ${subject} get the chosen version from their next boot. ${subject} serves ${short(c.version)} now.`,
      confirm: 'Set version',
      input: {
        label: 'Version',
        value: c.version,
        options: image.versions.map((v) => ({ value: v.id, label: `${short(v.id)} · published ${ago(v.publishedAtMs)}${v.channels.length ? ` · ${v.channels.join(', ')}` : ''}` })),
      },
    });
    if (value === undefined || value === c.version) return;
    await act(`${subject} set to ${short(value)}`, subject, () => api(path(image.name, 'channels', c.channel), { method: 'POST', body: { version: value, baseRevision: base }, prompt: false }), reload);
  };
  const promote = async (): Promise<void> => {
    const others = image.channels.filter((o) => o.channel !== c.channel);
    const suggestion = others.find((o) => o.channel === 'stable')?.channel ?? others[0]?.channel ?? '';
    const to = await confirmDialog({
      title: `Promote ${subject}?`,
      message: `The target channel will serve ${short(c.version)}, the version ${subject} serves; its current version goes on its history (rollback returns to it).`,
      confirm: 'Promote',
      input: { label: 'To channel', value: suggestion },
    });
    if (to === undefined) return;
    const target = to.trim();
    if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(target)) return void toast('A channel name is lower-case letters, digits, ".", "_" or "-"', 'error');
    const known = image.channels.find((o) => o.channel === target);
    // The target as the page showed it (0: it must not exist yet).
    const baseRevision = known?.modRevision ?? 0;
    await act(`${subject} promoted to ${image.name}@${target}`, `${image.name}@${target}`, () => api(path(image.name, 'promote'), { method: 'POST', body: { from: c.channel, to: target, baseRevision }, prompt: false }), reload);
  };
  const rollback = async (): Promise<void> => {
    const previous = c.history[0];
    if (!previous) return;
    const base = c.modRevision;
    const ok = await confirmDialog({
      title: `Roll ${subject} back?`,
      message: `${subject} goes back from ${short(c.version)} to ${short(previous)}, the version it served before. Machines get it from their next boot.`,
      confirm: 'Roll back',
      danger: true,
    });
    if (ok === undefined) return;
    await act(`${subject} rolled back to ${short(previous)}`, subject, () => api(path(image.name, 'channels', c.channel, 'rollback'), { method: 'POST', body: { baseRevision: base }, prompt: false }), reload);
  };
  return h(
    'div',
    { class: 'row-actions' },
    h('button', { class: 'small', 'data-testid': `set-version-${id}`, onclick: () => void setVersion() }, 'Set version…'),
    h('button', { class: 'small', 'data-testid': `promote-${id}`, onclick: () => void promote() }, 'Promote…'),
    h(
      'button',
      { class: 'small', 'data-testid': `rollback-${id}`, onclick: () => void rollback(), disabled: c.history.length === 0, title: c.history.length ? `back to ${short(c.history[0]!)}` : 'no earlier version to go back to' },
      'Rollback…',
    ),
  );
}

function setChannelButton(image: ImageDetail, versionId: string, reload: () => void): HTMLElement {
  const run = async (): Promise<void> => {
    const serving = image.channels.filter((c) => c.version !== versionId);
    const value = await confirmDialog({
      title: `Point a channel of ${image.name} at ${short(versionId)}?`,
      message: 'An existing channel moves to this version (its current one goes on its history); a new name creates the channel.',
      confirm: 'Set channel',
      input: { label: 'Channel', value: serving[0]?.channel ?? '' },
    });
    if (value === undefined) return;
    const channel = value.trim();
    if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(channel)) return void toast('A channel name is lower-case letters, digits, ".", "_" or "-"', 'error');
    const baseRevision = image.channels.find((c) => c.channel === channel)?.modRevision ?? 0;
    const subject = `${image.name}@${channel}`;
    await act(`${subject} set to ${short(versionId)}`, subject, () => api(path(image.name, 'channels', channel), { method: 'POST', body: { version: versionId, baseRevision }, prompt: false }), reload);
  };
  return h('button', { class: 'small ghost', 'data-testid': `set-channel-${image.name}-${short(versionId)}`, onclick: () => void run() }, 'Set channel…');
}

function cell(image: string, v: MatrixVersion, node: string): HTMLElement {
  const holding = v.holders[node] ?? { state: 'missing' };
  const pct = holding.state === 'copying' ? Math.max(0, Math.min(100, holding.percent ?? 0)) : undefined;
  const text = pct !== undefined ? `copying ${pct}%` : holding.state;
  const cls = holding.state === 'held' ? 'held' : holding.state === 'copying' ? 'copying' : holding.state === 'missing' ? 'missing' : 'unplaced';
  const mark = { held: '✓', copying: '↻', missing: '✗', unplaced: '–' }[cls];
  return h(
    'td',
    { class: `holding ${cls}`, 'data-testid': `holding-${image}-${short(v.id)}-${node}`, 'data-state': holding.state, title: `${node}: ${text}` },
    h('span', { class: 'mark', 'aria-hidden': 'true' }, mark),
    h('span', { class: 'text' }, text),
    pct !== undefined
      ? h('div', { class: 'bar', role: 'progressbar', 'aria-label': `${node} copying ${short(v.id)}`, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct }, h('div', { class: 'fill', style: `width:${pct}%` }))
      : null,
  );
}

function imagePanel(matrix: Matrix, image: ImageDetail, versions: MatrixVersion[], reload: () => void): HTMLElement {
  const detail = new Map(image.versions.map((v) => [v.id, v]));
  const held = versions.filter((v) => matrix.nodes.every((n) => v.holders[n]?.state === 'held' || v.holders[n]?.state === 'not placed')).length;
  return h(
    'section',
    { class: 'panel', 'data-testid': `image-${image.name}`, 'aria-labelledby': `image-title-${image.name}` },
    h(
      'div',
      { class: 'panel-head' },
      h('h2', { id: `image-title-${image.name}` }, image.name),
      h('span', { class: 'sub' }, `${versions.length} version(s), ${held} held wherever placed · ${image.channels.length} channel(s)`),
      image.placement ? badge('placement', 'info') : null,
    ),
    image.channels.length
      ? h(
          'table',
          { class: 'grid compact', 'data-testid': `channels-${image.name}` },
          h('caption', { class: 'sr-only' }, `Channels of ${image.name}`),
          h('thead', {}, h('tr', {}, ...['Channel', 'Version', 'Changed', 'Earlier versions', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            {},
            ...image.channels.map((c) =>
              h(
                'tr',
                { 'data-testid': `channel-${image.name}-${c.channel}`, 'data-version': c.version },
                h('th', { scope: 'row' }, h('strong', {}, c.channel)),
                h('td', { class: 'mono', 'data-testid': `channel-version-${image.name}-${c.channel}` }, short(c.version)),
                h('td', {}, h('span', {}, ago(c.changedAtMs)), c.change === 'rollback' ? badge('rolled back', 'warn') : null),
                h('td', { class: 'mono sub' }, c.history.map(short).join(', ') || '—'),
                h('td', {}, channelActions(image, c, reload)),
              ),
            ),
          ),
        )
      : h('p', { class: 'sub' }, 'No channel serves a version of this image.'),
    h(
      'table',
      { class: 'grid matrix', 'data-testid': `matrix-${image.name}` },
      h('caption', { class: 'sr-only' }, `Which node holds which version of ${image.name}`),
      h(
        'thead',
        {},
        h('tr', {}, h('th', { scope: 'col' }, 'Version'), h('th', { scope: 'col' }, 'Channels'), h('th', { scope: 'col' }, 'Published'), ...matrix.nodes.map((n) => h('th', { scope: 'col', class: 'node' }, n)), h('th', { scope: 'col' }, '')),
      ),
      h(
        'tbody',
        {},
        ...[...versions].reverse().map((v) =>
          h(
            'tr',
            { 'data-testid': `version-${image.name}-${short(v.id)}`, 'data-id': v.id },
            h('th', { scope: 'row', class: 'mono', title: v.id }, short(v.id), detail.get(v.id)?.note ? h('div', { class: 'sub' }, detail.get(v.id)!.note!) : null),
            h('td', {}, ...(v.channels.length ? v.channels.map((c) => badge(c, 'info')) : ['—'])),
            h('td', { title: new Date(v.publishedAtMs).toLocaleString() }, ago(v.publishedAtMs), h('div', { class: 'sub' }, `${bytes(v.bytes)} · ${v.files} file(s)`)),
            ...matrix.nodes.map((n) => cell(image.name, v, n)),
            h('td', {}, setChannelButton(image, v.id, reload)),
          ),
        ),
      ),
    ),
  );
}

export const imagesPage: Page = {
  title: 'Images',
  reloadOn: ['images', 'node-up', 'node-down'],
  pollMs: 2000,
  async load(root) {
    let matrix: Matrix;
    try {
      matrix = await api<Matrix>('/api/v1/images');
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        mount(root, h('div', { class: 'page-head' }, h('h1', {}, 'Images')), h('div', { class: 'panel', 'data-testid': 'images-none' }, err.message));
        return;
      }
      throw err;
    }
    const names = [...new Set(matrix.versions.map((v) => v.name))].sort();
    const details = await Promise.all(names.map((n) => api<ImageDetail>(path(n)).catch(() => ({ name: n, versions: [], channels: [] }) as ImageDetail)));
    const reload = (): void => void imagesPage.load(root).catch(() => undefined);
    if (failure && Date.now() - failure.atMs > FAILURE_SHOWN_MS) failure = undefined;
    mount(
      root,
      h('div', { class: 'page-head' }, h('h1', {}, 'Images'), h('span', { class: 'sub' }, `${names.length} image(s) · ${matrix.nodes.length} node(s)`)),
      failure
        ? h(
            'div',
            // Not `.error`: main.ts removes that (the load error) after each successful load.
            { class: 'action-error', role: 'alert', 'data-testid': 'images-error' },
            failure.message,
            ' ',
            h('button', { class: 'small ghost', 'data-testid': 'images-error-dismiss', onclick: () => ((failure = undefined), reload()) }, 'Dismiss'),
          )
        : null,
      matrix.window
        ? h('p', { class: 'sub', 'data-testid': 'images-window' }, `Replication window ${matrix.window.start}–${matrix.window.end} (${matrix.observer}): ${matrix.window.open ? 'open' : 'closed'}${matrix.window.waiting ? ', copies waiting for it' : ''}.`)
        : null,
      h(
        'div',
        { class: 'legend holding-legend', 'aria-hidden': 'true' },
        ...(['held', 'copying', 'missing', 'unplaced'] as const).map((s) => h('span', {}, h('i', { class: `holding ${s}` }), s === 'unplaced' ? 'not placed' : s === 'copying' ? 'copying n%' : s)),
      ),
      names.length === 0
        ? h('div', { class: 'panel empty', 'data-testid': 'images-empty' }, 'No images yet. Push one with ', h('code', {}, 'pxeha images push DIR --name NAME --channel stable'), '.')
        : null,
      ...names.map((n, i) =>
        imagePanel(
          matrix,
          details[i]!,
          matrix.versions.filter((v) => v.name === n),
          reload,
        ),
      ),
      h('p', { class: 'sub' }, `Copying progress as seen by ${matrix.observer}; held from each node's membership record.`),
    );
  },
};
