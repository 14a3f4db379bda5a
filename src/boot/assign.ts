/**
 * Which profile a machine boots, as a pure function of the operator's objects, so every node
 * that holds the same store revision answers the same way:
 *   1. the machine's own `profile`, if it names one;
 *   2. else the profile whose `selector` labels all equal the machine's labels, the most
 *      specific selector (most labels) first, ties broken by profile name;
 *   3. else the cluster's default profile (unknown machines get this too).
 */
import type { Machine, Profile } from '../config/schema.js';

export function assignProfileName(
  machine: Pick<Machine, 'profile' | 'labels'> | undefined,
  profiles: readonly Pick<Profile, 'name' | 'selector'>[],
  defaultProfile: string | undefined,
): string | undefined {
  if (machine?.profile !== undefined) return machine.profile;
  const labels = machine?.labels;
  if (labels) {
    const candidates = profiles
      .filter((p) => p.selector !== undefined && selects(p.selector, labels))
      .sort((a, b) => Object.keys(b.selector!).length - Object.keys(a.selector!).length || compareNames(a.name, b.name));
    if (candidates[0]) return candidates[0].name;
  }
  return defaultProfile;
}

/** An empty selector selects nothing: a profile must say which labels it is for. */
export function selects(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([key, value]) => Object.hasOwn(labels, key) && labels[key] === value);
}

// Bytewise, not locale order: the same on every node whatever its locale.
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
