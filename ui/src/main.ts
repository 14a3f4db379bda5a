/**
 * The pxeha dashboard: one page per view, chosen by the URL hash (#/cluster, #/machines, …).
 * Each view loads from the REST API, reloads when a cluster event arrives on the live stream
 * (and on a slow timer, for load and clocks), and unmounts when another view is chosen.
 */
import './style.css';
import { authListeners, onEvent, onStreamState, setToken, startEventStream, token } from './api.js';
import { confirmDialog, h, mount } from './dom.js';
import { clusterPage } from './pages/cluster.js';
import { eventsPage } from './pages/events.js';
import { funnelPage } from './pages/funnel.js';
import { imagesPage } from './pages/images.js';
import { leasesPage } from './pages/leases.js';
import { machinesPage } from './pages/machines.js';

/** A view draws into `root`; `refresh` is called on relevant events; the result stops it. */
export interface Page {
  title: string;
  /** Event kinds that make the page reload (undefined: none). */
  reloadOn?: readonly string[];
  /** Reload interval, ms. */
  pollMs?: number;
  load(root: HTMLElement): Promise<void>;
  /** Called for each live event (events page). */
  onEvent?(root: HTMLElement): void;
}

const pages: Record<string, Page> = {
  cluster: clusterPage,
  machines: machinesPage,
  leases: leasesPage,
  funnel: funnelPage,
  events: eventsPage,
  images: imagesPage,
};

const nav = h('nav', {});
const main = h('main', { id: 'page' });
const live = h('span', { class: 'live', 'data-testid': 'live' }, 'connecting');
const tokenButton = h('button', { class: 'ghost small', 'data-testid': 'token-button', onclick: () => void askToken() }, 'Token');

async function askToken(reason?: string): Promise<void> {
  const value = await confirmDialog({
    title: 'API token',
    message: `${reason ? `${reason} ` : ''}Paste a bearer token to send with every request (kept for this browser tab only). Leave empty to send none.`,
    confirm: 'Save',
    input: { label: 'Token', value: token() ?? '', type: 'password' },
  });
  if (value === undefined) return;
  setToken(value || undefined);
  startEventStream();
  void render();
}

let asked = false;
authListeners.add((status) => {
  if (asked) return;
  asked = true;
  void askToken(status === 401 ? 'The API wants a token.' : 'The token is not allowed this.').finally(() => (asked = false));
});

let current: { name: string; page: Page; timer?: number; pending?: number } | undefined;

async function render(): Promise<void> {
  const name = location.hash.replace(/^#\/?/, '') || 'cluster';
  const page = pages[name] ?? pages.cluster!;
  if (current?.timer) clearInterval(current.timer);
  current = { name, page };
  mount(
    nav,
    h('span', { class: 'brand' }, 'pxeha'),
    ...Object.entries(pages).map(([key, p]) => h('a', { href: `#/${key}`, class: key === name ? 'active' : '', 'data-testid': `nav-${key}` }, p.title)),
    h('span', { class: 'spacer' }),
    live,
    tokenButton,
  );
  document.title = `${page.title} · pxeha`;
  document.getElementById('toast')?.classList.remove('show');
  const root = h('section', { 'data-testid': `page-${name}` });
  mount(main, root);
  await loadInto(page, root);
  if (page.pollMs && current.page === page) current.timer = window.setInterval(() => void loadInto(page, root), page.pollMs);
}

async function loadInto(page: Page, root: HTMLElement): Promise<void> {
  try {
    await page.load(root);
  } catch (err) {
    if (!root.querySelector('.error')) root.prepend(h('div', { class: 'error', 'data-testid': 'load-error' }, `Could not load: ${(err as Error).message}`));
    return;
  }
  root.querySelector(':scope > .error')?.remove();
}

onEvent((e) => {
  const c = current;
  if (!c) return;
  const root = main.firstElementChild as HTMLElement | null;
  if (!root) return;
  c.page.onEvent?.(root);
  if (c.page.reloadOn?.includes(e.kind)) {
    // Coalesce bursts (a boot storm) into one reload.
    if (c.pending) return;
    c.pending = window.setTimeout(() => {
      c.pending = undefined;
      if (current === c) void loadInto(c.page, root);
    }, 250);
  }
});

onStreamState((connected) => {
  live.textContent = connected ? 'live' : 'reconnecting';
  live.className = `live ${connected ? 'on' : 'off'}`;
});

mount(document.getElementById('app')!, h('header', {}, nav), main);
window.addEventListener('hashchange', () => void render());
startEventStream();
void render();
