/**
 * `pxeha lab up|boot|down`: a virtual lab of QEMU machines network-booting through a pxeha
 * node, all inside network namespaces (logic in src/lab/lab.ts).
 */
import { Command, Option } from 'commander';
import { PxehaError } from '../errors.js';
import { DEFAULT_STATE_DIR, labBoot, labDown, labUp, runForward } from '../lab/lab.js';

const say = (line: string): void => console.log(line);

function positiveInt(name: string, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > max) throw new PxehaError('PXE_ERR_BAD_REQUEST', `${name} must be an integer from 0 to ${max}`);
    return n;
  };
}

export function registerLabCommands(program: Command): void {
  const lab = program.command('lab').description('a virtual lab: QEMU machines network-booting through a pxeha node, in network namespaces');
  const stateDir = (): Option => new Option('--state-dir <dir>', 'where the lab keeps its state, node and consoles').default(DEFAULT_STATE_DIR);

  lab
    .command('up')
    .description('create the namespaces, the bridge and a pxeha node serving examples/lab')
    .addOption(stateDir())
    .option('--api-port <port>', 'loopback TCP port forwarded to the API socket (0: none)', positiveInt('--api-port', 65535), 8080)
    .action(async (opts: { stateDir: string; apiPort: number }) => {
      await labUp({ stateDir: opts.stateDir, apiPort: opts.apiPort }, say);
      say('lab up; boot a machine with: pxeha lab boot [--uefi] [--count N]; remove it with: pxeha lab down');
    });

  lab
    .command('boot')
    .description('boot QEMU machines, streaming their consoles and a line per boot stage (DHCP, TFTP, HTTP, done)')
    .addOption(stateDir())
    .option('--uefi', 'OVMF (UEFI PXE → snponly.efi → iPXE) instead of SeaBIOS with the iPXE ROM')
    .option('--count <n>', 'machines to boot at once', positiveInt('--count', 32), 1)
    .option('--timeout <seconds>', 'give up after this long', positiveInt('--timeout', 3600), 300)
    .option('--keep', 'leave the machines running after they booted (pxeha lab down stops them)')
    .option('--quiet', 'progress lines only, no consoles')
    .action(async (opts: { stateDir: string; uefi?: boolean; count: number; timeout: number; keep?: boolean; quiet?: boolean }) => {
      const results = await labBoot(
        {
          stateDir: opts.stateDir,
          firmware: opts.uefi ? 'uefi' : 'bios',
          count: Math.max(1, opts.count),
          timeoutMs: opts.timeout * 1000,
          keep: opts.keep ?? false,
          consoles: !opts.quiet,
        },
        say,
      );
      for (const r of results) {
        say(
          r.seconds !== undefined
            ? `${r.name} (${r.firmware.toUpperCase()}, ${r.mac}${r.ip ? `, ${r.ip}` : ''}) booted: ${r.seconds.toFixed(1)} s from QEMU start to callback`
            : `${r.name} (${r.firmware.toUpperCase()}, ${r.mac}) did NOT complete its boot`,
        );
      }
      if (results.some((r) => r.seconds === undefined)) throw new PxehaError('PXE_ERR_INTERNAL', 'a machine did not boot');
    });

  lab
    .command('down')
    .description('stop everything the lab started (by PID) and delete its namespaces (by name)')
    .addOption(stateDir())
    .action(async (opts: { stateDir: string }) => {
      await labDown({ stateDir: opts.stateDir }, say);
    });

  // Internal: the loopback forward `lab up` starts in the host namespace.
  lab
    .command('forward', { hidden: true })
    .description('internal: the loopback TCP forward to the API socket that `pxeha lab up` starts')
    .requiredOption('--port <port>', 'loopback TCP port', positiveInt('--port', 65535))
    .requiredOption('--socket <path>', 'API Unix socket')
    .action(async (opts: { port: number; socket: string }) => {
      await runForward(opts.port, opts.socket);
    });
}
