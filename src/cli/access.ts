/**
 * How the CLI reaches cluster state: a node's API (its Unix socket when it runs beside us, or
 * `--server URL`), or the store file itself when no node holds it. Both paths validate with the
 * same schemas: the API validates bodies, the store path validates before writing.
 */
import { readFileSync } from 'node:fs';
import { listLeases } from '../api/routes.js';
import type { Role } from '../auth/roles.js';
import { createToken, listTokens, revokeToken, type CreatedToken, type TokenInfo } from '../auth/tokens.js';
import { ApiClient } from '../api/client.js';
import type { MachineStatus } from '../boot/render.js';
import { readClusterConfig, writeClusterConfig } from '../config/cluster-store.js';
import { loadNodeConfig } from '../config/load.js';
import type { ClusterConfig, Machine, Profile } from '../config/schema.js';
import type { LeaseRecord } from '../dhcp/lease-record.js';
import { PxehaError } from '../errors.js';
import { Inventory } from '../inventory/inventory.js';
import { apiSocketOf, describeStore, storeConfigOf } from '../node/node.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';

export interface AccessFlags {
  config?: string;
  store?: string;
  server?: string;
  /** API token for --server; default the PXEHA_TOKEN environment variable. */
  token?: string;
  /** PEM of the CA that signed an https --server's certificate. */
  cacert?: string;
}

/** The --server endpoint with its token (--token, else PXEHA_TOKEN) and CA (--cacert). */
export function serverEndpoint(flags: AccessFlags & { server: string }): { baseUrl: string; token?: string; ca?: Buffer } {
  const token = flags.token ?? process.env.PXEHA_TOKEN;
  let ca: Buffer | undefined;
  if (flags.cacert) {
    try {
      ca = readFileSync(flags.cacert);
    } catch (err) {
      throw new PxehaError('PXE_ERR_CONFIG_READ', `cannot read --cacert ${flags.cacert}: ${(err as Error).message}`);
    }
  }
  return { baseUrl: flags.server, ...(token ? { token } : {}), ...(ca ? { ca } : {}) };
}

export interface ClusterAccess {
  readonly via: string;
  readConfig(): Promise<{ revision: number; config: ClusterConfig }>;
  writeConfig(config: ClusterConfig): Promise<number>;
  leases(subnet?: string): Promise<LeaseRecord[]>;
  profiles(): Promise<Profile[]>;
  putProfile(p: unknown): Promise<Profile>;
  deleteProfile(name: string): Promise<boolean>;
  machines(): Promise<Machine[]>;
  putMachine(m: unknown): Promise<Machine>;
  deleteMachine(name: string): Promise<boolean>;
  reprovision(name: string): Promise<MachineStatus>;
  statuses(): Promise<MachineStatus[]>;
  createToken(input: { role: Role; name?: string }): Promise<CreatedToken>;
  listTokens(): Promise<TokenInfo[]>;
  revokeToken(id: string): Promise<boolean>;
  close(): Promise<void>;
}

async function storeAccess(store: Store, via: string): Promise<ClusterAccess> {
  const inventory = await Inventory.open(store, () => {});
  return {
    via,
    readConfig: () => readClusterConfig(store),
    writeConfig: (config) => writeClusterConfig(store, config),
    leases: (subnet) => listLeases(store, subnet),
    profiles: async () => inventory.listProfiles(),
    putProfile: (p) => inventory.putProfile(p),
    deleteProfile: (name) => inventory.deleteProfile(name),
    machines: async () => inventory.listMachines(),
    putMachine: (m) => inventory.putMachine(m),
    deleteMachine: (name) => inventory.deleteMachine(name),
    reprovision: (name) => inventory.reprovision(name, Date.now()),
    statuses: async () => inventory.listStatuses(),
    createToken: (input) => createToken(store, input),
    listTokens: () => listTokens(store),
    revokeToken: (id) => revokeToken(store, id),
    close: async () => {
      await inventory.close();
      await store.close();
    },
  };
}

function apiAccess(client: ApiClient): ClusterAccess {
  const named = (kind: string, x: unknown): string => {
    const name = (x as { name?: unknown })?.name;
    if (typeof name !== 'string') throw new PxehaError('PXE_ERR_CONFIG_INVALID', `${kind}: missing name`);
    return encodeURIComponent(name);
  };
  return {
    via: client.description,
    readConfig: () => client.call('GET', '/api/v1/config/cluster'),
    writeConfig: async (config) => (await client.call<{ revision: number }>('PUT', '/api/v1/config/cluster', config)).revision,
    leases: (subnet) => client.call('GET', `/api/v1/leases${subnet ? `?subnet=${encodeURIComponent(subnet)}` : ''}`),
    profiles: () => client.call('GET', '/api/v1/profiles'),
    putProfile: (p) => client.call('PUT', `/api/v1/profiles/${named('profile', p)}`, p),
    deleteProfile: async (name) => (await client.call<{ deleted: boolean }>('DELETE', `/api/v1/profiles/${encodeURIComponent(name)}`)).deleted,
    machines: () => client.call('GET', '/api/v1/machines'),
    putMachine: (m) => client.call('PUT', `/api/v1/machines/${named('machine', m)}`, m),
    deleteMachine: async (name) => (await client.call<{ deleted: boolean }>('DELETE', `/api/v1/machines/${encodeURIComponent(name)}`)).deleted,
    reprovision: (name) => client.call('POST', `/api/v1/machines/${encodeURIComponent(name)}/reprovision`),
    statuses: () => client.call('GET', '/api/v1/machine-status'),
    createToken: (input) => client.call('POST', '/api/v1/tokens', input),
    listTokens: () => client.call('GET', '/api/v1/tokens'),
    revokeToken: async (id) => (await client.call<{ deleted: boolean }>('DELETE', `/api/v1/tokens/${encodeURIComponent(id)}`)).deleted,
    close: async () => {},
  };
}

/**
 * --server talks to that node; --store opens a store file; --config asks the node of that
 * configuration if it runs (the embedded store is held by one process) and opens its store if not.
 */
export async function openAccess(flags: AccessFlags): Promise<ClusterAccess> {
  if (flags.server) return apiAccess(new ApiClient(serverEndpoint({ ...flags, server: flags.server })));
  if (flags.store) return storeAccess(await openStore({ kind: 'embedded', path: flags.store }), flags.store);
  if (flags.config) {
    const node = await loadNodeConfig(flags.config);
    const client = new ApiClient({ socketPath: apiSocketOf(node) });
    if (await client.reachable()) return apiAccess(client);
    const store = storeConfigOf(node);
    return storeAccess(await openStore(store), describeStore(store));
  }
  throw new PxehaError('PXE_ERR_CONFIG_INVALID', 'say where the cluster is: --config NODE.yaml, --store PATH or --server URL');
}

export async function withAccess<T>(flags: AccessFlags, fn: (access: ClusterAccess) => Promise<T>): Promise<T> {
  const access = await openAccess(flags);
  try {
    return await fn(access);
  } finally {
    await access.close();
  }
}
