/**
 * Which boot answer a network-boot client gets: a pure function of what the client said
 * (vendor class, user class, architecture) and the cluster's boot rules. Order matters:
 * iPXE is recognised first, because the ROMs in QEMU and many NICs already are iPXE and must
 * not be sent a PXE binary to chainload into themselves again.
 */
import type { BootOverride, BootRules } from '../config/schema.js';

/** RFC 4578 §2.1 / IANA "Processor Architecture Types" (option 93). */
export const ClientArch = {
  BIOS_X86: 0,
  EFI_IA32: 6,
  EFI_BC: 7, // "EFI BC": x86-64 UEFI in practice (RFC 4578 errata 4803)
  EFI_X86_64: 9,
  EFI_ARM32: 10,
  EFI_ARM64: 11,
  HTTP_X86: 15,
  HTTP_X86_64: 16,
  HTTP_ARM64: 19,
} as const;

export interface BootFacts {
  /** Option 60 starts with "PXEClient" (PXE spec 2.1). */
  isPxeClient: boolean;
  /** Option 60 starts with "HTTPClient" (UEFI 2.5 HTTP Boot). */
  isHttpClient: boolean;
  /** User class "iPXE" or option 175 present. */
  isIpxe: boolean;
  /** First entry of option 93, if sent. */
  arch: number | undefined;
  /** Option 60 is IPXE_CHAIN_MARK: this iPXE was loaded by an `ipxe-chain` answer. */
  chainedByPxeha?: boolean;
}

/**
 * Option 60 of an `ipxe-chain` answer. The iPXE that answer loads (undionly.kpxe) starts from
 * the firmware's cached DHCPACK (iPXE `cachedhcp`) and sends that packet's vendor class in its
 * own requests, so its DISCOVER carries the mark back and gets the script: the chain loop is
 * broken with no state on any node. Firmware iPXE sends "PXEClient:Arch:…" and never the mark.
 */
export const IPXE_CHAIN_MARK = 'PXEClient:pxeha:chained';

export interface BootTarget {
  /** Address TFTP/HTTP is fetched from (siaddr, option 66 stays unset). */
  nodeAddress: string;
  httpPort: number;
}

export interface BootAnswer {
  /** BOOTP `file` / option 67. */
  file: string;
  /** BOOTP `siaddr`, the next server. */
  nextServer: string;
  /** Option 60 to echo: PXE clients ignore offers without "PXEClient"; HTTP Boot wants "HTTPClient". */
  vendorClass: 'PXEClient' | 'HTTPClient' | typeof IPXE_CHAIN_MARK | undefined;
  /** Tell iPXE not to wait for a ProxyDHCP offer (option 175.176 = 1). */
  ipxeSkipProxyWait: boolean;
  /** What kind of answer this is, for logs and metrics. */
  kind: 'ipxe-script' | 'ipxe-chain' | 'http-boot' | 'pxe-file';
}

export function expandUrl(template: string, target: BootTarget): string {
  return template.replaceAll('{node}', target.nodeAddress).replaceAll('{httpPort}', String(target.httpPort));
}

export function pxeFileForArch(arch: number | undefined, files: BootRules['files']): string | undefined {
  switch (arch) {
    // PXE ROMs in the wild often omit option 93; they are legacy BIOS ROMs (smee does the same).
    case undefined:
    case ClientArch.BIOS_X86:
      return files.bios;
    case ClientArch.EFI_IA32:
      return files.efiIa32;
    case ClientArch.EFI_BC:
    case ClientArch.EFI_X86_64:
      return files.efiX64;
    case ClientArch.EFI_ARM64:
      return files.efiArm64;
    default:
      return undefined;
  }
}

/** Returns the boot answer for a client, or undefined when it is not a network-boot client we serve. */
export function decideBoot(
  facts: BootFacts,
  rules: BootRules,
  target: BootTarget,
  override: BootOverride | undefined,
): BootAnswer | undefined {
  const nextServer = override?.nextServer ?? target.nodeAddress;
  const vendorClass = facts.isPxeClient ? 'PXEClient' : undefined;
  if (facts.isIpxe) {
    if (override?.ipxeChainFile !== undefined && !facts.chainedByPxeha) {
      return { file: override.ipxeChainFile, nextServer, vendorClass: IPXE_CHAIN_MARK, ipxeSkipProxyWait: true, kind: 'ipxe-chain' };
    }
    return {
      file: override?.script ?? expandUrl(rules.ipxeScriptUrl, target),
      nextServer,
      vendorClass,
      ipxeSkipProxyWait: true,
      kind: 'ipxe-script',
    };
  }
  if (facts.isHttpClient) {
    return {
      file: expandUrl(rules.httpBootUrl, target),
      nextServer,
      vendorClass: 'HTTPClient',
      ipxeSkipProxyWait: false,
      kind: 'http-boot',
    };
  }
  if (facts.isPxeClient) {
    const file = override?.file ?? pxeFileForArch(facts.arch, rules.files);
    if (file === undefined) return undefined;
    return { file, nextServer, vendorClass, ipxeSkipProxyWait: false, kind: 'pxe-file' };
  }
  return undefined;
}
