/**
 * A server the tests and benchmarks run inside a namespace (pxeha, kea-dhcp4): its process and
 * the temporary directory holding its configuration and data (from Netns.tempDir).
 */
import { rm } from 'node:fs/promises';
import type { ExitStatus, NetnsProcess } from './netns.js';

export abstract class ServerProcess {
  protected constructor(
    readonly proc: NetnsProcess,
    readonly workDir: string,
  ) {}

  /** SIGTERM, and waits for the exit (SIGKILL after graceMs). */
  stop(graceMs = 10_000): Promise<ExitStatus> {
    return this.proc.stop(graceMs);
  }

  /**
   * Removes the temporary directory (configuration and data) now; the sandbox that made it
   * (Netns.tempDir) removes it anyway, on a signal too.
   */
  async remove(): Promise<void> {
    await rm(this.workDir, { recursive: true, force: true });
  }
}
