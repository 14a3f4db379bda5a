/**
 * `pxeha images push PATH --name N [--channel C]`, `pxeha images ls` and `pxeha images status`.
 *
 * push chunks a directory or file into the chunk store of the node whose configuration is given
 * (`<dataDir>/chunks`, on this host) and records the version in that node's store; the node then
 * advertises it and its peers replicate it. Re-running after an interruption only writes the
 * chunks not yet stored (chunks are content-addressed and written atomically). status prints the
 * replication matrix (version × node) from a node's API.
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
import { holdingText, type ImagesStatus } from '../images/status.js';
import { apiSocketOf, storeConfigOf } from '../node/node.js';
import { openStore } from '../store/open.js';
import { serverEndpoint, type AccessFlags } from './access.js';

export function registerImageCommands(program: Command): void {
  const images = program.command('images').description('boot images: publish, replication status');
  images
    .command('push <path>')
    .description('chunk a directory or file into this node\'s chunk store and record it as a version')
    .requiredOption('-c, --config <file>', 'node configuration (its data dir and store)')
    .requiredOption('--name <name>', 'image name')
    .option('--channel <channel>', 'also point this channel at the new version')
    .option('--note <text>', 'note recorded with the version')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (path: string, opts: { config: string; name: string; channel?: string; note?: string; output: string }) => {
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
    });
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
