/**
 * Per-machine iPXE scripts and files, as pure functions of the machine, its profile, what the
 * firmware told us and which node answers. Templates are Mustache (logic-less: a template can
 * read facts but run nothing) with HTML escaping off, since the output is iPXE or installer
 * text; iPXE's own `${...}` settings pass through untouched.
 */
import Mustache from 'mustache';
import type { Machine, Profile } from '../config/schema.js';
import { pinnedImagePath, type ResolvedImage } from '../images/image-ref.js';

/** What the firmware (iPXE query parameters) says about the machine. */
export interface FirmwareFacts {
  mac: string;
  uuid?: string;
  arch?: string;
  serial?: string;
  asset?: string;
  manufacturer?: string;
  product?: string;
  /** Address the request came from. */
  ip?: string;
}

export interface ServingNode {
  name: string;
  /** Address machines reach this node at. */
  address: string;
  httpPort: number;
}

export interface MachineStatus {
  mac: string;
  firstSeenMs: number;
  lastSeenMs: number;
  /** Set when a `once` profile's install reported completion; cleared by reprovision. */
  installedAtMs?: number;
  /** Last boot stage reached (dhcp, tftp, script, kernel, done) and when. */
  lastStage?: string;
  lastStageMs?: number;
  lastNode?: string;
  facts?: Omit<FirmwareFacts, 'mac'>;
}

export interface RenderInput {
  facts: FirmwareFacts;
  machine: Machine | undefined;
  profile: Profile | undefined;
  status: MachineStatus | undefined;
  /** The node rendering the script: scripts, per-machine files and callbacks are fetched here. */
  node: ServingNode;
  /**
   * The machine's boot servers, best first (src/boot/servers.ts): every artifact is fetched from
   * the first, then each next one if that fails. Default: the rendering node alone.
   */
  servers?: readonly ServingNode[];
  /** The machine's callback token (src/auth/machine-token.ts), put in `callbackUrl`. */
  callbackToken?: string;
  /**
   * The version the profile's `image` resolved to for this script: every image URL names it, so
   * a channel switch during the boot cannot mix versions.
   */
  image?: ResolvedImage;
  /** Why the profile's image cannot be served now (unknown, or no node holds it whole). */
  imageProblem?: string;
}

/** Base URL of a node's HTTP server. */
export function nodeUrl(node: ServingNode): string {
  return `http://${node.address}:${node.httpPort}`;
}

/**
 * An artifact reference in a profile: absolute URLs stay, paths are served by the node, from its
 * artifacts directory or, for an image-backed profile, pinned to the resolved image version.
 */
export function artifactUrl(ref: string, node: ServingNode, image?: ResolvedImage): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref)) return ref;
  if (image) return `${nodeUrl(node)}/${pinnedImagePath(image, ref).split('/').map(encodeURIComponent).join('/')}`;
  return `${nodeUrl(node)}/artifacts/${ref.replace(/^\/+/, '')}`;
}

export function machineFileUrl(mac: string, file: string, node: ServingNode): string {
  return `${nodeUrl(node)}/machines/${encodeURIComponent(mac)}/files/${encodeURIComponent(file)}`;
}

/** The install-once callback; it carries the machine's own token, without which it is refused. */
export function doneCallbackUrl(mac: string, node: ServingNode, token?: string): string {
  return `${nodeUrl(node)}/boot/done?mac=${encodeURIComponent(mac)}${token !== undefined ? `&token=${encodeURIComponent(token)}` : ''}`;
}

/**
 * The values a template can read: this machine's facts, machine object and profile, the serving
 * nodes, and URLs for this MAC only (files, callback with its token). Nothing of any other
 * machine is reachable from a template (the view is built from the input alone).
 */
export function templateView(input: RenderInput): Record<string, unknown> {
  const { facts, machine, profile, node } = input;
  // Mustache reads dots as nesting, so `preseed.cfg` is offered as `files.preseed_cfg`.
  const files: Record<string, string> = {};
  for (const name of Object.keys(profile?.files ?? {})) files[name.replace(/[.-]/g, '_')] = machineFileUrl(facts.mac, name, node);
  return withoutPrototypes({
    mac: facts.mac,
    ip: facts.ip ?? '',
    uuid: facts.uuid ?? machine?.uuid ?? '',
    arch: facts.arch ?? '',
    serial: facts.serial ?? '',
    asset: facts.asset ?? '',
    hostname: machine?.hostname ?? machine?.name ?? '',
    labels: machine?.labels ?? {},
    machine: { name: machine?.name ?? '', profile: profile?.name ?? '' },
    node: { name: node.name, address: node.address, httpPort: node.httpPort, url: nodeUrl(node) },
    // Boot servers best first, so a script template can write its own `|| chain ...` fallbacks.
    servers: serversOf(input).map((s) => ({ name: s.name, address: s.address, httpPort: s.httpPort, url: nodeUrl(s) })),
    files,
    callbackUrl: doneCallbackUrl(facts.mac, node, input.callbackToken),
  }) as Record<string, unknown>;
}

function serversOf(input: RenderInput): readonly ServingNode[] {
  return input.servers !== undefined && input.servers.length > 0 ? input.servers : [input.node];
}

/**
 * One iPXE command that fetches `ref` from each boot server in turn until one answers
 * (`kernel a || kernel b`), so a server that dies mid-boot costs a retry, not the boot.
 */
function withFallbacks(
  command: string,
  ref: string,
  rest: string,
  servers: readonly ServingNode[],
  image: ResolvedImage | undefined,
): string {
  const urls = [...new Set(servers.map((s) => artifactUrl(ref, s, image)))];
  return urls.map((url) => `${command} ${url}${rest}`).join(' || ');
}

/**
 * Mustache looks names up with `in`, which walks prototypes (`{{constructor}}` would print a
 * function); a view of null-prototype objects holds only what we put in it.
 */
function withoutPrototypes(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutPrototypes);
  if (value === null || typeof value !== 'object') return value;
  const out = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of Object.entries(value)) out[k] = withoutPrototypes(v);
  return out;
}

export function renderTemplate(template: string, view: Record<string, unknown>): string {
  return Mustache.render(template, view, undefined, { escape: (s: string) => s });
}

const LOCALBOOT: Record<'exit' | 'sanboot', string[]> = {
  // `exit` hands control back to the firmware, which tries the next boot device.
  exit: ['exit'],
  // Boot the first hard disk directly; fall back to the firmware's order if that fails.
  sanboot: ['sanboot --no-describe --drive 0x80 || exit'],
};

/**
 * The iPXE script for one machine. Lines starting with `#` state why the machine gets this
 * script, so an operator reading a serial console can tell.
 */
export function renderBootScript(input: RenderInput): string {
  const { facts, machine, profile, status, node } = input;
  const who = machine ? `machine ${machine.name} (${facts.mac})` : `unknown machine ${facts.mac}`;
  const head = ['#!ipxe', `# pxeha ${node.name}: ${who}${profile ? `, profile ${profile.name}` : ''}`];
  if (!profile) {
    return [...head, 'echo pxeha: no profile for this machine; trying the next boot device', ...LOCALBOOT.exit, ''].join('\n');
  }
  if (profile.once && status?.installedAtMs !== undefined) {
    return [
      ...head,
      `# installed at ${new Date(status.installedAtMs).toISOString()}; reprovision to install again`,
      'echo pxeha: installed, booting from local disk',
      ...LOCALBOOT[profile.localboot],
      '',
    ].join('\n');
  }
  if (profile.image !== undefined && (input.image === undefined || input.imageProblem !== undefined)) {
    // Nothing to fetch that any node would serve: say why and let the firmware retry or move on.
    const why = input.imageProblem ?? `image ${profile.image} is not known to this node`;
    return [...head, `# ${why}`, `echo pxeha: ${why}; trying the next boot device`, ...LOCALBOOT.exit, ''].join('\n');
  }
  const image = profile.image !== undefined ? input.image : undefined;
  if (image) head.push(`# image ${profile.image} = version ${image.version}`);
  const view = templateView(input);
  const boot = profile.boot;
  switch (boot.kind) {
    case 'kernel': {
      const initrds = boot.initrds ?? [];
      const initrdNames = initrds.map((ref) => basename(ref));
      const args = renderTemplate(boot.args ?? '', view).trim();
      // initrd= names let a UEFI kernel find its initrds (the EFI stub reads them by name).
      const cmdline = [...initrdNames.map((n) => `initrd=${n}`), args].filter((x) => x !== '').join(' ');
      const servers = serversOf(input);
      return [
        ...head,
        ...(servers.length > 1 ? [`# boot servers: ${servers.map((s) => s.name).join(', ')}`] : []),
        withFallbacks('kernel', boot.kernel, cmdline ? ` ${cmdline}` : '', servers, image),
        ...initrds.map((ref) => withFallbacks('initrd', ref, '', servers, image)),
        'boot',
        '',
      ].join('\n');
    }
    case 'script': {
      const body = renderTemplate(boot.script, view).replace(/^#!ipxe[^\n]*\n?/, '');
      return [...head, body.replace(/\n*$/, ''), ''].join('\n');
    }
    case 'chain':
      return [...head, `chain ${renderTemplate(boot.url, view)}`, ''].join('\n');
    case 'sanboot': {
      // Every holder, as one multipath SAN drive: iPXE uses whichever answers first and retries
      // the others if it fails (https://ipxe.org/cmd/sanhook, Notes).
      const urls = [...new Set(serversOf(input).map((s) => artifactUrl(boot.disk, s, image)))];
      return [...head, `sanboot ${urls.join(' ')} || exit`, ''].join('\n');
    }
    case 'localboot':
      return [...head, ...LOCALBOOT[boot.method ?? 'exit'], ''].join('\n');
  }
}

function basename(ref: string): string {
  const clean = ref.split(/[?#]/)[0] ?? ref;
  return clean.slice(clean.lastIndexOf('/') + 1);
}
