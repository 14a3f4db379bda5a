/** A few DOM helpers: the dashboard has no framework, so these stand in for one. */

type Child = Node | string | number | false | null | undefined | Child[];
type Attrs = Record<string, string | number | boolean | EventListener | undefined | null>;

/** h('div', {class: 'x', onclick: fn}, 'text', child) */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replaces the children of `el`. */
export function mount(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

export function ago(ms: number | undefined, now = Date.now()): string {
  if (!ms) return '—';
  const s = Math.round((now - ms) / 1000);
  if (s < 2) return 'just now';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

export function bytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(0)} MiB`;
  return `${(n / 1024).toFixed(0)} KiB`;
}

export function badge(text: string, kind: string, testid?: string): HTMLElement {
  return h('span', { class: `badge ${kind}`, ...(testid ? { 'data-testid': testid } : {}) }, text);
}

/**
 * A modal confirmation. With `input`, the dialog also asks for a value and resolves with it;
 * resolves with undefined when cancelled.
 */
export function confirmDialog(options: {
  title: string;
  message: string;
  confirm: string;
  danger?: boolean;
  /** `options`: a choice; each a value shown as itself, or a value with a label. */
  input?: { label: string; value: string; type?: string; options?: (string | { value: string; label: string })[] };
}): Promise<string | undefined> {
  return new Promise((resolve) => {
    let field: HTMLInputElement | HTMLSelectElement | undefined;
    if (options.input?.options) {
      field = h(
        'select',
        { 'data-testid': 'dialog-input' },
        ...options.input.options.map((o) => {
          const { value, label } = typeof o === 'string' ? { value: o, label: o || '(selector or default)' } : o;
          return h('option', { value, selected: value === options.input!.value }, label);
        }),
      );
    } else if (options.input) {
      field = h('input', { 'data-testid': 'dialog-input', type: options.input.type ?? 'text', value: options.input.value });
    }
    const dialog = h(
      'dialog',
      { class: 'dialog', 'data-testid': 'confirm-dialog' },
      h(
        'form',
        { method: 'dialog' },
        h('h3', {}, options.title),
        h('p', {}, options.message),
        field ? h('label', {}, options.input!.label, field) : null,
        h(
          'div',
          { class: 'actions' },
          h('button', { value: 'cancel', class: 'ghost', 'data-testid': 'dialog-cancel' }, 'Cancel'),
          h('button', { value: 'ok', class: options.danger ? 'danger' : 'primary', 'data-testid': 'dialog-confirm' }, options.confirm),
        ),
      ),
    );
    dialog.addEventListener('close', () => {
      const ok = dialog.returnValue === 'ok';
      dialog.remove();
      resolve(ok ? (field ? field.value : '') : undefined);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    field?.focus();
  });
}

let toastTimer: number | undefined;
export function toast(message: string, kind: 'ok' | 'error' = 'ok'): void {
  let el = document.getElementById('toast');
  if (!el) {
    el = h('div', { id: 'toast', 'data-testid': 'toast' });
    document.body.appendChild(el);
  }
  el.textContent = message;
  el.className = `show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => el!.classList.remove('show'), 4000);
}
