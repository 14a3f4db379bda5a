/**
 * `pxeha images push | ls | status | show | publish | promote | rollback | rm | gc | place`.
 *
 * push with `--config` chunks a directory or file into the chunk store of the node whose
 * configuration is given (`<dataDir>/chunks`, on this host) and records the version in that
 * node's store; with `--server URL` it chunks here and uploads through the API only the chunks
 * the node lacks (src/images/upload.ts), then records the version there. Either way the node
 * advertises it and its peers replicate it, and re-running after an interruption only sends or
 * writes the chunks not yet stored (chunks are content-addressed and written atomically).
 * Every other command goes through a node's REST API (src/http/routes/image-lifecycle.ts);
 * changes need the operator role.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import Table from 'cli-table3';
import { ApiClient } from '../api/client.js';
import { loadNodeConfig } from '../config/load.js';
import { PxehaError } from '../errors.js';
import { Catalog } from '../images/catalog.js';
import { ChunkStore } from '../images/chunk-store.js';
import { publishDraft } from '../images/publish.js';
import type { ChannelView, ImageDetail } from '../http/routes/image-lifecycle.js';
import { holdingText, type ImagesStatus } from '../images/status.js';
import { TokenBucket } from '../images/throttle.js';
import { progressLine, uploadDraft, type RecordRequest, type UploadProgress } from '../images/upload.js';
import { apiSocketOf, storeConfigOf } from '../node/node.js';
import { openStore } from '../store/open.js';
import { serverEndpoint, type AccessFlags } from './access.js';

export function registerImageCommands(program: Command): void {
  const images = program.command('images').description('boot images: publish, stages (channels), placement, replication status');
  images
    .command('push <path>')
    .description('record a directory or file as a version: into this node\'s chunk store (--config), or uploaded through a node\'s API (--server; resumable)')
    .option('-c, --config <file>', 'node configuration (its data dir and store): publish on this host')
    .option('--server <url>', 'a node API to upload to (only the chunks it lacks are sent)')
    .option('--token <token>', 'API token for --server, operator role (default: $PXEHA_TOKEN)')
    .option('--cacert <file>', 'CA certificate (PEM) that signed an https --server')
    .option('--rate-limit <bytesPerSecond>', 'with --server: send at most this many bytes per second', (v) => positiveInt(v, '--rate-limit'))
    .requiredOption('--name <name>', 'image name')
    .option('--channel <channel>', 'also point this channel at the new version')
    .option('--note <text>', 'note recorded with the version')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (path: string, opts: AccessFlags & { config?: string; name: string; channel?: string; note?: string; output: string; rateLimit?: number }) => {
      if (opts.server) {
        await remotePush(path, { ...opts, server: opts.server });
        return;
      }
      if (!opts.config) throw new PxehaError('PXE_ERR_CONFIG_INVALID', 'say where to publish: --config NODE.yaml (this host) or --server URL (upload)');
      const node = await loadNodeConfig(opts.config);
      const chunks = await ChunkStore.open(node.dataDir);
      const store = await openStore(storeConfigOf(node));
      try {
        const r = await publishDraft(path, {
          catalog: new Catalog(store),
          chunks,
          name: opts.name,
          ...(opts.channel !== undefined ? { channel: opts.channel } : {}),
          ...(opts.note !== undefined ? { note: opts.note } : {}),
        });
        if (opts.output === 'json') console.log(JSON.stringify({ id: r.id, created: r.created, stats: r.stats, ...(r.channel ? { channel: r.channel.channel } : {}) }, null, 2));
        else {
          console.log(`${opts.name} version ${r.id}${r.created ? '' : ' (already recorded)'}`);
          console.log(`${r.stats.files} files, ${r.stats.bytes} bytes in ${r.stats.chunks} chunks (${r.stats.newChunks} new, ${r.stats.newBytes} bytes)`);
          if (r.channel) console.log(`channel ${r.channel.channel} -> ${r.id}`);
        }
      } finally {
        await store.close();
      }
    });
  apiOptions(images.command('ls').description('recorded image versions and the channels serving them')).action(async (opts: AccessFlags & { output: string }) => {
    const status = await (await clientFor(opts)).call<ImagesStatus>('GET', '/api/v1/images');
    if (opts.output === 'json') {
      console.log(JSON.stringify(status.versions.map(({ holders: _h, ...v }) => v), null, 2));
      return;
    }
    const table = new Table({ head: ['image', 'version', 'channels', 'files', 'bytes', 'published', 'held by'], style: { head: [], border: [] } });
    for (const v of status.versions) {
      const held = Object.entries(v.holders).filter(([, h]) => h.state === 'held').length;
      table.push([v.name, v.id.slice(0, 12), v.channels.join(','), String(v.files), String(v.bytes), new Date(v.publishedAtMs).toISOString(), `${held}/${status.nodes.length}`]);
    }
    console.log(table.toString());
  });
  apiOptions(images.command('status').description('replication matrix: image version x node (held, copying n%, missing)'))
    .action(async (opts: AccessFlags & { output: string }) => {
      const status = await (await clientFor(opts)).call<ImagesStatus>('GET', '/api/v1/images');
      if (opts.output === 'json') {
        console.log(JSON.stringify(status, null, 2));
        return;
      }
      const table = new Table({ head: ['image', 'version', 'channels', 'bytes', ...status.nodes], style: { head: [], border: [] } });
      for (const v of status.versions) {
        table.push([v.name, v.id.slice(0, 12), v.channels.join(','), String(v.bytes), ...status.nodes.map((n) => holdingText(v.holders[n] ?? { state: 'missing' }))]);
      }
      console.log(table.toString());
      const w = status.window;
      if (w) console.log(`${status.observer}: replication window ${w.start}-${w.end} (local time), ${w.open ? 'open' : w.waiting ? 'closed: waiting for window' : 'closed'}`);
    });

  apiOptions(images.command('show <image>').description('an image (NAME or NAME@VERSION): versions, files, sizes, channels, placement, holders')).action(
    async (ref: string, opts: AccessFlags & { output: string }) => {
      const [name, version] = ref.split('@') as [string, string | undefined];
      const detail = await (await clientFor(opts)).call<ImageDetail>('GET', `/api/v1/images/${encodeURIComponent(name)}`);
      const versions = version ? detail.versions.filter((v) => v.id.startsWith(version) || detail.channels.some((c) => c.channel === version && c.version === v.id)) : detail.versions;
      if (version && versions.length !== 1) throw new PxehaError('PXE_ERR_NOT_FOUND', `${ref}: ${versions.length === 0 ? 'no' : 'more than one'} version matches`);
      if (opts.output === 'json') {
        console.log(JSON.stringify(version ? versions[0] : detail, null, 2));
        return;
      }
      const placement = detail.placement
        ? `${detail.placement.replicas === 'all' ? 'all nodes' : `${detail.placement.replicas} node(s)`}${detail.placement.labels ? ` labelled ${labelText(detail.placement.labels)}` : ''}${detail.plan ? `: ${detail.plan.nodes.join(', ') || 'none'}${detail.plan.underReplicated ? ' (under-replicated)' : ''}` : ''}`
        : 'all nodes';
      console.log(`image ${detail.name}, placed on ${placement}`);
      const channels = new Table({ head: ['channel', 'version', 'history', 'changed', 'revision'], style: { head: [], border: [] } });
      for (const c of detail.channels) channels.push([c.channel, c.version.slice(0, 12), c.history.map((h) => h.slice(0, 12)).join(','), `${c.change} ${new Date(c.changedAtMs).toISOString()}`, String(c.modRevision)]);
      if (!version) console.log(channels.toString());
      for (const v of versions) {
        const held = Object.entries(v.holders).map(([n, h]) => `${n}: ${holdingText(h)}`).join(', ');
        console.log(`version ${v.id}  ${v.bytes} bytes in ${v.chunks} chunks, published ${new Date(v.publishedAtMs).toISOString()}${v.channels.length ? `, channels ${v.channels.join(',')}` : ''}${v.note ? `, note: ${v.note}` : ''}`);
        if (held) console.log(`  holders: ${held}`);
        if (version) {
          const files = new Table({ head: ['path', 'bytes', 'chunks'], style: { head: [], border: [] } });
          for (const f of v.files ?? []) files.push([f.path, String(f.size), String(f.chunks)]);
          console.log(v.files ? files.toString() : '  files: the answering node does not hold the manifest yet');
        }
      }
    },
  );
  apiOptions(images.command('publish <image> <version>').description('point a channel (stage) at a recorded version; refused if the channel changed since --base-revision'))
    .requiredOption('--channel <channel>', 'the channel to point')
    .option('--base-revision <n>', 'change only if the channel is still at this revision (0: must not exist)', (v) => nonNegativeInt(v, '--base-revision'))
    .action(async (name: string, version: string, opts: AccessFlags & { channel: string; baseRevision?: number; output: string }) => {
      const client = await clientFor(opts);
      const id = await resolveVersion(client, name, version);
      const state = await client.call<ChannelView>('POST', `/api/v1/images/${name}/channels/${opts.channel}`, {
        version: id,
        ...(opts.baseRevision !== undefined ? { baseRevision: opts.baseRevision } : {}),
      });
      printChannel(name, state, opts.output);
    });
  apiOptions(images.command('promote <image>').description('stages: point channel --to at the version channel --from serves (one compare-and-set)'))
    .requiredOption('--from <channel>', 'the stage promoted from (e.g. test)')
    .requiredOption('--to <channel>', 'the stage promoted to (e.g. production)')
    .option('--base-revision <n>', 'promote only if --to is still at this revision (0: must not exist)', (v) => nonNegativeInt(v, '--base-revision'))
    .action(async (name: string, opts: AccessFlags & { from: string; to: string; baseRevision?: number; output: string }) => {
      const state = await (await clientFor(opts)).call<ChannelView>('POST', `/api/v1/images/${name}/promote`, {
        from: opts.from,
        to: opts.to,
        ...(opts.baseRevision !== undefined ? { baseRevision: opts.baseRevision } : {}),
      });
      printChannel(name, state, opts.output);
    });
  apiOptions(images.command('rollback <image>').description("point a channel back at its previous version"))
    .requiredOption('--channel <channel>', 'the channel to roll back')
    .option('--base-revision <n>', 'roll back only if the channel is still at this revision', (v) => nonNegativeInt(v, '--base-revision'))
    .action(async (name: string, opts: AccessFlags & { channel: string; baseRevision?: number; output: string }) => {
      const state = await (await clientFor(opts)).call<ChannelView>('POST', `/api/v1/images/${name}/channels/${opts.channel}/rollback`, {
        ...(opts.baseRevision !== undefined ? { baseRevision: opts.baseRevision } : {}),
      });
      printChannel(name, state, opts.output);
    });
  apiOptions(images.command('rm <image> <version>').description('remove a version no channel serves or can roll back to (its chunks go at the next gc)')).action(
    async (name: string, version: string, opts: AccessFlags & { output: string }) => {
      const client = await clientFor(opts);
      const id = await resolveVersion(client, name, version);
      await client.call('DELETE', `/api/v1/images/${name}/versions/${id}`);
      if (opts.output === 'json') console.log(JSON.stringify({ deleted: true, id }));
      else console.log(`${name} version ${id} removed`);
    },
  );
  apiOptions(images.command('gc').description("collect the node's unreferenced chunks (those written or touched within the grace period are spared)"))
    .option('--grace <seconds>', 'spare chunks written or touched this recently (default 3600)', (v) => nonNegativeInt(v, '--grace'))
    .action(async (opts: AccessFlags & { grace?: number; output: string }) => {
      const r = await (await clientFor(opts)).call<{ deletedChunks: number; deletedBytes: number; spared: number }>('POST', '/api/v1/images/gc', {
        ...(opts.grace !== undefined ? { graceSeconds: opts.grace } : {}),
      });
      if (opts.output === 'json') console.log(JSON.stringify(r));
      else console.log(`freed ${r.deletedBytes} bytes in ${r.deletedChunks} chunks; ${r.spared} unreferenced chunks spared (younger than the grace period)`);
    });
  apiOptions(images.command('place <image>').description('where an image lives: on all nodes or on k, optionally only nodes with given labels'))
    .option('--replicas <k|all>', 'how many nodes hold it (default all)', 'all')
    .option('--label <key=value...>', 'only nodes with this label (repeatable)')
    .option('--clear', 'remove the placement: every node holds the image')
    .action(async (name: string, opts: AccessFlags & { replicas: string; label?: string[]; clear?: boolean; output: string }) => {
      const client = await clientFor(opts);
      if (opts.clear) {
        const r = await client.call<{ deleted: boolean }>('DELETE', `/api/v1/images/${name}/placement`);
        console.log(opts.output === 'json' ? JSON.stringify(r) : `${name}: placement removed, every node holds it`);
        return;
      }
      const replicas = opts.replicas === 'all' ? 'all' : positiveInt(opts.replicas, '--replicas');
      const labels = Object.fromEntries(
        (opts.label ?? []).map((l) => {
          const i = l.indexOf('=');
          if (i <= 0) throw new PxehaError('PXE_ERR_CONFIG_INVALID', `--label ${l}: expected key=value`);
          return [l.slice(0, i), l.slice(i + 1)];
        }),
      );
      const r = await client.call<Record<string, unknown>>('PUT', `/api/v1/images/${name}/placement`, { replicas, ...(Object.keys(labels).length > 0 ? { labels } : {}) });
      if (opts.output === 'json') console.log(JSON.stringify(r));
      else console.log(`${name}: placed on ${replicas === 'all' ? 'all nodes' : `${replicas} node(s)`}${Object.keys(labels).length ? ` labelled ${labelText(labels)}` : ''}; the leader plans which`);
    });
}

function labelText(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',');
}

function printChannel(name: string, s: ChannelView, output: string): void {
  if (output === 'json') console.log(JSON.stringify(s, null, 2));
  else console.log(`${name} channel ${s.channel} -> ${s.version} (revision ${s.modRevision}${s.history.length ? `, previous ${s.history[0]!.slice(0, 12)}` : ''})`);
}

/** A version given as a full id, a unique prefix of one, or a channel name (what it serves). */
async function resolveVersion(client: ApiClient, name: string, ref: string): Promise<string> {
  if (/^[0-9a-f]{64}$/.test(ref)) return ref;
  const detail = await client.call<ImageDetail>('GET', `/api/v1/images/${encodeURIComponent(name)}`);
  const channel = detail.channels.find((c) => c.channel === ref);
  if (channel) return channel.version;
  const matches = detail.versions.filter((v) => v.id.startsWith(ref));
  if (matches.length !== 1) throw new PxehaError('PXE_ERR_NOT_FOUND', `${name}@${ref}: ${matches.length === 0 ? 'no' : 'more than one'} version matches`);
  return matches[0]!.id;
}

function positiveInt(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new PxehaError('PXE_ERR_CONFIG_INVALID', `${flag} must be a positive integer, got ${v}`);
  return n;
}

function nonNegativeInt(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new PxehaError('PXE_ERR_CONFIG_INVALID', `${flag} must be a non-negative integer, got ${v}`);
  return n;
}

/** `images push --server`: chunk here, send what the node lacks, record there. */
async function remotePush(path: string, opts: AccessFlags & { server: string; name: string; channel?: string; note?: string; output: string; rateLimit?: number }): Promise<void> {
  const client = new ApiClient(serverEndpoint(opts));
  const tty = process.stderr.isTTY === true && opts.output !== 'json';
  const started = performance.now();
  let lastLine = -1;
  const report = (p: Readonly<UploadProgress>): void => {
    const elapsed = performance.now() - started;
    if (tty) {
      process.stderr.write(`\r${progressLine(p, elapsed)}`);
      return;
    }
    // Plain lines (a log, a pipe): one per 10%, and the first.
    const decile = p.totalBytes === 0 ? 10 : Math.floor((p.doneBytes / p.totalBytes) * 10);
    if (decile === lastLine) return;
    lastLine = decile;
    process.stderr.write(`${progressLine(p, elapsed)}\n`);
  };
  const r = await uploadDraft(path, {
    name: opts.name,
    ...(opts.channel !== undefined ? { channel: opts.channel } : {}),
    ...(opts.note !== undefined ? { note: opts.note } : {}),
    ...(opts.rateLimit !== undefined ? { throttle: new TokenBucket(opts.rateLimit) } : {}),
    onProgress: report,
    api: {
      missing: async (hashes) => (await client.call<{ missing: string[] }>('POST', '/api/v1/chunks/missing', { hashes })).missing,
      putChunk: async (hash, data) => {
        await client.call('PUT', `/api/v1/chunks/${hash}`, undefined, { bytes: data, timeoutMs: 60_000 });
      },
      record: (name, body: RecordRequest) =>
        client.call<{ id: string; created: boolean }>('POST', `/api/v1/images/${encodeURIComponent(name)}/versions`, body, { timeoutMs: 60_000 }),
    },
  });
  if (tty) process.stderr.write('\n');
  const p = r.progress;
  if (opts.output === 'json') {
    console.log(JSON.stringify({ id: r.id, created: r.created, stats: { files: r.files, bytes: p.totalBytes, chunks: r.chunks, sentChunks: p.sentChunks, sentBytes: p.sentBytes, skippedChunks: p.skippedChunks, skippedBytes: p.skippedBytes } }, null, 2));
    return;
  }
  console.log(`${opts.name} version ${r.id}${r.created ? '' : ' (already recorded)'}`);
  console.log(`${r.files} files, ${p.totalBytes} bytes in ${r.chunks} chunks: sent ${p.sentChunks} (${p.sentBytes} bytes), ${p.skippedChunks} already on the node`);
  if (opts.channel) console.log(`channel ${opts.channel} -> ${r.id}`);
}

function apiOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'node configuration: ask its running node')
    .option('--server <url>', 'a node API to use')
    .option('--token <token>', 'API token for --server (default: $PXEHA_TOKEN)')
    .option('--cacert <file>', 'CA certificate (PEM) that signed an https --server')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'));
}

async function clientFor(opts: AccessFlags): Promise<ApiClient> {
  if (opts.server) return new ApiClient(serverEndpoint({ ...opts, server: opts.server }));
  if (opts.config) return new ApiClient({ socketPath: apiSocketOf(await loadNodeConfig(opts.config)) });
  throw new PxehaError('PXE_ERR_CONFIG_INVALID', 'say which node to ask: --config NODE.yaml or --server URL');
}
