/**
 * Which of the artifacts the configuration names this node holds: each is looked up with the
 * same path rules the TFTP and HTTP servers apply (resolve.ts), so a node never claims a file it
 * would refuse to serve. The node publishes the list in its membership record and boot servers
 * are chosen among the holders (src/boot/servers.ts).
 */
import { resolveArtifact } from './resolve.js';

export class ArtifactHoldings {
  #held: string[] = [];

  constructor(
    private readonly root: string,
    /** The artifacts the configuration names now. */
    private readonly referenced: () => readonly string[],
  ) {}

  /** Sorted relative paths held at the last refresh. */
  held(): string[] {
    return this.#held;
  }

  /** Looks again; true when the list changed. */
  async refresh(): Promise<boolean> {
    const held: string[] = [];
    for (const ref of [...new Set(this.referenced())].sort()) {
      if ((await resolveArtifact(this.root, ref)).ok) held.push(ref);
    }
    const changed = held.length !== this.#held.length || held.some((r, i) => r !== this.#held[i]);
    this.#held = held;
    return changed;
  }
}
