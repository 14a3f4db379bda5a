/**
 * Machines, profiles and what pxeha has seen of each machine, in the store:
 *   /pxeha/profiles/<name>        Profile (operator's)
 *   /pxeha/machines/<name>        Machine (operator's)
 *   /pxeha/machine-status/<mac>   MachineStatus (pxeha's: first/last seen, boot stage, installed)
 * Operator objects are validated with the same schemas on every path (API, CLI, apply) and
 * again when read back, so a bad key in the store is skipped and reported, never served.
 */
import { validate } from '../config/load.js';
import { MachineSchema, ProfileSchema, type ClusterConfig, type Machine, type Profile } from '../config/schema.js';
import { PxehaError } from '../errors.js';
import { assignProfileName } from '../boot/assign.js';
import type { FirmwareFacts, MachineStatus } from '../boot/render.js';
import { PrefixCache } from '../store/prefix-cache.js';
import type { Store } from '../store/store.js';

export const PROFILE_PREFIX = '/pxeha/profiles/';
export const MACHINE_PREFIX = '/pxeha/machines/';
export const STATUS_PREFIX = '/pxeha/machine-status/';

export type BootStage = 'dhcp' | 'tftp' | 'script' | 'kernel' | 'done';

export function normalizeMacText(mac: string): string {
  return mac.trim().toLowerCase().replaceAll('-', ':');
}

export class Inventory {
  /** mac → the last status update queued for it (see updateStatus). */
  private readonly statusUpdates = new Map<string, Promise<MachineStatus>>();

  private constructor(
    private readonly store: Store,
    private readonly profiles: PrefixCache<Profile>,
    private readonly machines: PrefixCache<Machine>,
    private readonly statuses: PrefixCache<MachineStatus>,
  ) {}

  static async open(store: Store, onError: (err: Error) => void): Promise<Inventory> {
    const parseWith =
      <T>(schema: Parameters<typeof validate>[0], what: string) =>
      (value: string, key: string): T | undefined => {
        try {
          return validate<T>(schema, JSON.parse(value), `${what} ${key}`);
        } catch (err) {
          onError(err as Error);
          return undefined;
        }
      };
    const parseStatus = (value: string): MachineStatus | undefined => {
      try {
        return JSON.parse(value) as MachineStatus;
      } catch {
        return undefined;
      }
    };
    return new Inventory(
      store,
      await PrefixCache.open(store, PROFILE_PREFIX, parseWith<Profile>(ProfileSchema, 'profile'), onError),
      await PrefixCache.open(store, MACHINE_PREFIX, parseWith<Machine>(MachineSchema, 'machine'), onError),
      await PrefixCache.open(store, STATUS_PREFIX, parseStatus, onError),
    );
  }

  profile(name: string): Profile | undefined {
    return this.profiles.get(name);
  }

  /** Changes whenever a profile does (see PrefixCache.generation). */
  get profilesGeneration(): number {
    return this.profiles.generation;
  }

  listProfiles(): Profile[] {
    return this.profiles.values().sort((a, b) => a.name.localeCompare(b.name));
  }

  machine(name: string): Machine | undefined {
    return this.machines.get(name);
  }

  listMachines(): Machine[] {
    return this.machines.values().sort((a, b) => a.name.localeCompare(b.name));
  }

  status(mac: string): MachineStatus | undefined {
    return this.statuses.get(normalizeMacText(mac));
  }

  listStatuses(): MachineStatus[] {
    return this.statuses.values().sort((a, b) => a.mac.localeCompare(b.mac));
  }

  /** The machine a request is from: by MAC first, then by client UUID (option 97 / iPXE ${uuid}). */
  findMachine(mac: string, uuid: string | undefined): Machine | undefined {
    const m = normalizeMacText(mac);
    const all = this.machines.values();
    return (
      all.find((x) => x.mac !== undefined && normalizeMacText(x.mac) === m) ??
      (uuid ? all.find((x) => x.uuid !== undefined && x.uuid.toLowerCase() === uuid.toLowerCase()) : undefined)
    );
  }

  /** The profile a machine boots: its own, else one its labels select, else the cluster's default. */
  profileFor(machine: Machine | undefined, cluster: ClusterConfig): Profile | undefined {
    const name = assignProfileName(machine, this.profiles.values(), cluster.boot.defaultProfile);
    return name !== undefined ? this.profile(name) : undefined;
  }

  async putProfile(input: unknown): Promise<Profile> {
    const profile = validate<Profile>(ProfileSchema, input, 'profile');
    const { revision } = await this.store.put(PROFILE_PREFIX + profile.name, JSON.stringify(profile));
    this.profiles.apply(PROFILE_PREFIX + profile.name, JSON.stringify(profile), revision);
    return profile;
  }

  /** Refuses to remove a profile a machine still boots. */
  async deleteProfile(name: string): Promise<boolean> {
    const users = this.listMachines().filter((m) => m.profile === name);
    if (users.length > 0) {
      throw new PxehaError('PXE_ERR_CONFLICT', `profile ${name} is used by ${users.map((m) => m.name).join(', ')}`);
    }
    return (await this.store.delete(PROFILE_PREFIX + name)).deleted > 0;
  }

  async putMachine(input: unknown): Promise<Machine> {
    const machine = validate<Machine>(MachineSchema, input, 'machine');
    if (!machine.mac && !machine.uuid) {
      throw new PxehaError('PXE_ERR_CONFIG_INVALID', `machine ${machine.name} needs mac or uuid to be recognised`);
    }
    if (machine.profile !== undefined && !this.profile(machine.profile)) throw new PxehaError('PXE_ERR_NOT_FOUND', `profile ${machine.profile} does not exist`);
    const value = JSON.stringify(machine);
    const { revision } = await this.store.put(MACHINE_PREFIX + machine.name, value);
    this.machines.apply(MACHINE_PREFIX + machine.name, value, revision);
    return machine;
  }

  async deleteMachine(name: string): Promise<boolean> {
    return (await this.store.delete(MACHINE_PREFIX + name)).deleted > 0;
  }

  /**
   * Records that a machine reached a boot stage (first/last seen, facts, serving node), with a
   * compare-and-set so concurrent updates from several nodes never lose one another's fields.
   */
  async recordStage(mac: string, stage: BootStage, node: string, nowMs: number, facts?: Omit<FirmwareFacts, 'mac'>): Promise<MachineStatus> {
    return this.updateStatus(mac, nowMs, (s) => ({
      ...s,
      lastSeenMs: nowMs,
      lastStage: stage,
      lastStageMs: nowMs,
      lastNode: node,
      ...(facts ? { facts: { ...s.facts, ...dropEmpty(facts) } } : {}),
    }));
  }

  /** The install of a `once` profile finished: boot from local disk from now on. */
  async markInstalled(mac: string, node: string, nowMs: number): Promise<MachineStatus> {
    return this.updateStatus(mac, nowMs, (s) => ({ ...s, lastSeenMs: nowMs, lastStage: 'done', lastStageMs: nowMs, lastNode: node, installedAtMs: nowMs }));
  }

  /** Install again on the next boot. */
  async reprovision(machineName: string, nowMs: number): Promise<MachineStatus> {
    const machine = this.machine(machineName);
    if (!machine) throw new PxehaError('PXE_ERR_NOT_FOUND', `machine ${machineName} does not exist`);
    if (!machine.mac) throw new PxehaError('PXE_ERR_CONFLICT', `machine ${machineName} has no mac; its boot status is kept by mac`);
    return this.updateStatus(machine.mac, nowMs, (s) => {
      const { installedAtMs: _, ...rest } = s;
      return rest;
    });
  }

  /**
   * Status updates of one machine run one after another on this node: concurrent requests of
   * one machine (iPXE retrying, an installer's callbacks) would otherwise all read the same
   * revision, and all but one lose each compare-and-set round until the retries run out. The
   * compare-and-set still settles races with other nodes.
   */
  private updateStatus(macText: string, nowMs: number, change: (s: MachineStatus) => MachineStatus): Promise<MachineStatus> {
    const mac = normalizeMacText(macText);
    const previous = this.statusUpdates.get(mac);
    const update = (previous ? previous.catch(() => undefined) : Promise.resolve()).then(() => this.updateStatusNow(mac, nowMs, change));
    this.statusUpdates.set(mac, update);
    const forget = () => {
      if (this.statusUpdates.get(mac) === update) this.statusUpdates.delete(mac);
    };
    update.then(forget, forget);
    return update;
  }

  private async updateStatusNow(mac: string, nowMs: number, change: (s: MachineStatus) => MachineStatus): Promise<MachineStatus> {
    const key = STATUS_PREFIX + mac;
    for (let attempt = 0; attempt < 5; attempt++) {
      const expected = this.statuses.revisionOf(mac);
      const next = change(this.statuses.get(mac) ?? { mac, firstSeenMs: nowMs, lastSeenMs: nowMs });
      const value = JSON.stringify(next);
      const result = await this.store.txn({
        compare: [{ key, target: 'modRevision', op: '==', value: expected }],
        success: [{ type: 'put', key, value }],
        failure: [{ type: 'range', key }],
      });
      if (result.succeeded) {
        this.statuses.apply(key, value, result.revision);
        return next;
      }
      const r = result.responses[0];
      const kv = r?.type === 'range' ? r.result.kvs[0] : undefined;
      if (kv) this.statuses.apply(kv.key, kv.value, kv.modRevision);
    }
    throw new PxehaError('PXE_ERR_CONFLICT', `machine status of ${mac} kept changing; try again`);
  }

  async close(): Promise<void> {
    await Promise.all([this.profiles.close(), this.machines.close(), this.statuses.close()]);
  }
}

function dropEmpty<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== '')) as Partial<T>;
}
