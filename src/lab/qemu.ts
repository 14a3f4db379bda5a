/**
 * QEMU virtual machines that network-boot through pxeha: the command line for each firmware,
 * as a pure function, and what their serial console says about how far the boot has come.
 *
 * - BIOS: SeaBIOS with the iPXE NIC ROM of Debian's `ipxe-qemu` (`efi-e1000.rom`, a combined
 *   BIOS+UEFI iPXE image; Debian's `pxe-e1000.rom` link is dangling). Its first DISCOVER already
 *   carries user class `iPXE`. SeaBIOS prints to a serial port only when fw_cfg
 *   `etc/sercon-port` holds the port as little-endian binary bytes, and only with `-vga none`.
 * - UEFI: OVMF with a virtio-net NIC and no option ROM (`romfile=`), so OVMF's own PXE client
 *   (VirtioNetDxe + PxeBcDxe, no user class) boots, fetching `snponly.efi`/`ipxe.efi` by TFTP.
 *
 * Always TCG: KVM here crashes inside the iPXE ROM. `-nodefaults` keeps QEMU from adding a
 * user-mode NIC that would reach outside the lab.
 */
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

export type Firmware = 'bios' | 'uefi';

export const FIRMWARE_FILES = {
  /** iPXE ROM for QEMU's e1000 (ipxe-qemu). */
  biosNicRom: '/usr/lib/ipxe/qemu/efi-e1000.rom',
  /** OVMF (ovmf): code, read-only, and the template of each machine's own variable store. */
  ovmfCode: '/usr/share/OVMF/OVMF_CODE_4M.fd',
  ovmfVars: '/usr/share/OVMF/OVMF_VARS_4M.fd',
} as const;

export interface VmSpec {
  firmware: Firmware;
  /** Guest NIC MAC, e.g. 52:54:00:99:01:01. */
  mac: string;
  /** An existing tap interface (created beforehand, already on the bridge). */
  tap: string;
  /** File the serial console is written to. */
  consoleFile: string;
  /** BIOS: file holding the SeaBIOS serial port for fw_cfg (see writeSerconPort). */
  serconFile?: string;
  /** UEFI: this machine's writable copy of the OVMF variable store (see prepareUefiVars). */
  uefiVarsFile?: string;
  memoryMiB?: number;
  /**
   * BIOS: when every boot device failed, reboot after this long and try again (SeaBIOS
   * reboot-timeout), as servers set to retry network boot do; default: stop at "No bootable device".
   */
  rebootTimeoutMs?: number;
}

/** COM1, for SeaBIOS's `etc/sercon-port`: a 16-bit little-endian port number in a file. */
export function writeSerconPort(file: string, port = 0x3f8): void {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16LE(port);
  writeFileSync(file, bytes);
}

/** A fresh OVMF variable store for one machine (OVMF writes boot entries into it). */
export function prepareUefiVars(file: string): void {
  copyFileSync(FIRMWARE_FILES.ovmfVars, file);
}

/** Firmware files this host lacks, each with the Debian package that ships it. */
export function missingFirmware(): string[] {
  const wants: [string, string][] = [
    [FIRMWARE_FILES.biosNicRom, 'ipxe-qemu'],
    [FIRMWARE_FILES.ovmfCode, 'ovmf'],
    [FIRMWARE_FILES.ovmfVars, 'ovmf'],
  ];
  return wants.filter(([file]) => !existsSync(file)).map(([file, pkg]) => `${file} (${pkg})`);
}

/** The qemu-system-x86_64 command line (without the binary) for one machine. */
export function qemuArgs(vm: VmSpec): string[] {
  const common = [
    '-nodefaults',
    '-no-user-config',
    '-accel',
    'tcg',
    '-smp',
    '1',
    '-m',
    String(vm.memoryMiB ?? 256),
    '-display',
    'none',
    '-vga',
    'none',
    '-serial',
    `file:${vm.consoleFile}`,
    '-netdev',
    `tap,id=n0,ifname=${vm.tap},script=no,downscript=no`,
  ];
  if (vm.firmware === 'bios') {
    if (!vm.serconFile) throw new Error('a BIOS machine needs serconFile');
    return [
      ...common,
      '-machine',
      'pc',
      '-fw_cfg',
      `name=etc/sercon-port,file=${vm.serconFile}`,
      '-device',
      `e1000,netdev=n0,mac=${vm.mac},romfile=${FIRMWARE_FILES.biosNicRom},bootindex=1`,
      '-boot',
      vm.rebootTimeoutMs !== undefined ? `order=n,reboot-timeout=${vm.rebootTimeoutMs}` : 'n',
    ];
  }
  if (!vm.uefiVarsFile) throw new Error('a UEFI machine needs uefiVarsFile');
  return [
    ...common,
    '-machine',
    'q35',
    '-drive',
    `if=pflash,format=raw,unit=0,readonly=on,file=${FIRMWARE_FILES.ovmfCode}`,
    '-drive',
    `if=pflash,format=raw,unit=1,file=${vm.uefiVarsFile}`,
    // No option ROM: OVMF's own virtio-net driver and PXE client, not iPXE.
    '-device',
    `virtio-net-pci,netdev=n0,mac=${vm.mac},romfile=,bootindex=1`,
  ];
}

export type BootStageName = 'firmware' | 'dhcp' | 'tftp' | 'http' | 'done' | 'localboot';

/**
 * Console lines that mark a boot stage, from SeaBIOS, OVMF's PXE client and iPXE. The console
 * carries terminal escapes and carriage returns; match on plain substrings.
 */
const STAGE_MARKERS: { stage: BootStageName; pattern: RegExp }[] = [
  { stage: 'firmware', pattern: /SeaBIOS|BdsDxe|UEFI PXEv4|iPXE initialising devices/ },
  // iPXE "Configuring (net0 …)" / OVMF ">>Start PXE over IPv4"
  { stage: 'dhcp', pattern: /Configuring \(net0|Start PXE over IPv4/ },
  // iPXE "tftp://…/undionly.kpxe…" / OVMF "Downloading NBP file"
  { stage: 'tftp', pattern: /tftp:\/\/|Downloading NBP file/ },
  { stage: 'http', pattern: /http:\/\/[^ ]*\/boot\.ipxe/ },
  { stage: 'done', pattern: /boot\/done/ },
  { stage: 'localboot', pattern: /booting from local disk/ },
];

/** Stages the console text shows, in order of first appearance. */
export function stagesInConsole(text: string): BootStageName[] {
  const found: { stage: BootStageName; at: number }[] = [];
  for (const { stage, pattern } of STAGE_MARKERS) {
    const m = pattern.exec(text);
    if (m) found.push({ stage, at: m.index });
  }
  return found.sort((a, b) => a.at - b.at).map((f) => f.stage);
}

/** The console file as text without terminal escapes (empty when not yet written). */
export function readConsole(file: string): string {
  if (!existsSync(file)) return '';
  return cleanConsole(readFileSync(file, 'latin1'));
}

/**
 * Strips ANSI escapes and carriage-return overprints, and plays backspaces as a terminal does,
 * so a console log reads as plain lines. iPXE draws a download's progress as " 42%" then
 * "\b\b\b\b    \b\b\b\b" before the next figure or the outcome: what is left is "... ok".
 */
export function cleanConsole(raw: string): string {
  return (
    raw
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1bc/g, '')
      .replace(/\r+\n/g, '\n')
      .split('\n')
      .map((line) => playBackspaces(line.slice(line.lastIndexOf('\r') + 1)))
      .join('\n')
  );
}

/** A line as a terminal shows it: a backspace moves the cursor left, the next character overwrites. */
function playBackspaces(line: string): string {
  if (!line.includes('\b')) return line;
  const cells: string[] = [];
  let cursor = 0;
  for (const ch of line) {
    if (ch === '\b') cursor = Math.max(0, cursor - 1);
    else cells[cursor++] = ch;
  }
  return cells.join('').trimEnd();
}
