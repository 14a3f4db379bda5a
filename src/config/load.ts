/**
 * Validation of configuration documents: one Ajv instance, schema defaults applied,
 * `additionalProperties: false`, then semantic checks the schema cannot express (pools inside
 * their subnet, no overlapping pools, unique names and reservations). Every problem is
 * reported with the JSON pointer of the bad field, and the result is deep-frozen so no code
 * can change configuration behind the store's back.
 */
import { readFile } from 'node:fs/promises';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml } from 'yaml';
import type { TSchema } from '@sinclair/typebox';
import { ConfigError, PxehaError, type ValidationIssue } from '../errors.js';
import { ipToInt, networkContains, parseCidr } from '../util/ipv4.js';
import {
  ClusterConfigSchema,
  NodeConfigSchema,
  type ClusterConfig,
  type DhcpOptionsConfig,
  type NodeConfig,
} from './schema.js';

// ajv-formats ships CommonJS with a default export; under NodeNext it arrives wrapped.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

const ajv = addFormats(new Ajv({ allErrors: true, useDefaults: true, strict: true, strictTypes: false }));
ajv.addKeyword('kind').addKeyword('modifier');

const compiled = new WeakMap<TSchema, ValidateFunction>();
function validatorFor(schema: TSchema): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

function describeAjvError(e: ErrorObject): ValidationIssue {
  if (e.keyword === 'additionalProperties') {
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    return { path: `${e.instancePath}/${extra}`, message: 'is not a known field' };
  }
  return { path: e.instancePath, message: e.message ?? 'is invalid' };
}

/** Union schemas report every branch; keep the most specific issue per path. */
function dedupe(issues: ValidationIssue[]): ValidationIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const k = `${i.path}\0${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * A checker for `schema` that applies defaults to its argument in place and returns the
 * problems found (empty when valid): what the HTTP layer plugs into Fastify, so API bodies and
 * files go through the very same validator.
 */
export function compileChecker(schema: TSchema): (data: unknown) => ValidationIssue[] {
  const v = validatorFor(schema);
  return (data) => (v(data) ? [] : dedupe((v.errors ?? []).map(describeAjvError)));
}

/** Validates `input` against `schema` (applying defaults to a copy) or throws ConfigError. */
export function validate<T>(schema: TSchema, input: unknown, what: string): T {
  const copy: unknown = structuredClone(input ?? {});
  const v = validatorFor(schema);
  if (!v(copy)) throw new ConfigError(what, dedupe((v.errors ?? []).map(describeAjvError)));
  return copy as T;
}

function checkOptions(options: DhcpOptionsConfig | undefined, path: string, issues: ValidationIssue[]): void {
  options?.custom?.forEach((c, i) => {
    const given = [c.hex, c.text, c.ipv4].filter((x) => x !== undefined).length;
    if (given !== 1) issues.push({ path: `${path}/custom/${i}`, message: 'needs exactly one of hex, text or ipv4' });
  });
}

/** Checks what JSON Schema cannot: address arithmetic and uniqueness across the document. */
export function checkClusterSemantics(config: ClusterConfig): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const names = new Set<string>();
  const reservedMacs = new Map<string, string>();
  const ranges: { start: number; end: number; path: string }[] = [];
  config.subnets.forEach((s, si) => {
    const base = `/subnets/${si}`;
    if (names.has(s.name)) issues.push({ path: `${base}/name`, message: `duplicates subnet name ${s.name}` });
    names.add(s.name);
    const net = parseCidr(s.subnet);
    if (ipToInt(s.subnet.split('/')[0]!) !== net.network) {
      issues.push({ path: `${base}/subnet`, message: 'has host bits set; give the network address' });
    }
    if (s.mode === 'proxy') {
      // The foreign server owns addressing; per-machine boot settings come from machines.
      if (s.pools.length > 0) issues.push({ path: `${base}/pools`, message: 'must be empty in proxy mode' });
      if (s.reservations.length > 0) issues.push({ path: `${base}/reservations`, message: 'must be empty in proxy mode' });
    }
    s.pools.forEach((p, pi) => {
      const start = ipToInt(p.start);
      const end = ipToInt(p.end);
      const path = `${base}/pools/${pi}`;
      if (!networkContains(net, start)) issues.push({ path: `${path}/start`, message: `is outside ${s.subnet}` });
      if (!networkContains(net, end)) issues.push({ path: `${path}/end`, message: `is outside ${s.subnet}` });
      if (end < start) issues.push({ path: `${path}/end`, message: 'is before start' });
      for (const r of ranges) {
        if (start <= r.end && r.start <= end) issues.push({ path, message: `overlaps ${r.path}` });
      }
      ranges.push({ start, end, path });
    });
    checkOptions(s.options, `${base}/options`, issues);
    const addresses = new Set<string>();
    s.reservations.forEach((r, ri) => {
      const path = `${base}/reservations/${ri}`;
      if (!r.mac && !r.clientId) issues.push({ path, message: 'needs mac or clientId' });
      if (!networkContains(net, ipToInt(r.address))) {
        issues.push({ path: `${path}/address`, message: `is outside ${s.subnet}` });
      }
      if (addresses.has(r.address)) issues.push({ path: `${path}/address`, message: `is reserved twice in ${s.name}` });
      addresses.add(r.address);
      if (r.mac) {
        const mac = r.mac.toLowerCase().replaceAll('-', ':');
        const other = reservedMacs.get(`${s.name}/${mac}`);
        if (other) issues.push({ path: `${path}/mac`, message: `is already reserved at ${other}` });
        reservedMacs.set(`${s.name}/${mac}`, path);
      }
      checkOptions(r.options, `${path}/options`, issues);
    });
  });
  return issues;
}

export function parseClusterConfig(input: unknown, what = 'cluster configuration'): ClusterConfig {
  const config = validate<ClusterConfig>(ClusterConfigSchema, input, what);
  const issues = checkClusterSemantics(config);
  if (issues.length > 0) throw new ConfigError(what, issues);
  return deepFreeze(config);
}

export function parseNodeConfig(input: unknown, what = 'node configuration'): NodeConfig {
  return deepFreeze(validate<NodeConfig>(NodeConfigSchema, input, what));
}

export async function readYamlFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new PxehaError('PXE_ERR_CONFIG_READ', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new PxehaError('PXE_ERR_CONFIG_READ', `${path} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
}

export async function loadNodeConfig(path: string): Promise<NodeConfig> {
  return parseNodeConfig(await readYamlFile(path), path);
}

export async function loadClusterConfig(path: string): Promise<ClusterConfig> {
  return parseClusterConfig(await readYamlFile(path), path);
}
