import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseClusterConfig } from '../config/load.js';
import { ClientArch, decideBoot, IPXE_CHAIN_MARK, type BootFacts } from './rules.js';

const rules = parseClusterConfig({}).boot;
const target = { nodeAddress: '10.99.0.1', httpPort: 8080 };
const pxe = (arch: number | undefined): BootFacts => ({ isPxeClient: true, isHttpClient: false, isIpxe: false, arch });

describe('decideBoot', () => {
  const cases: [string, BootFacts, string | undefined][] = [
    ['BIOS PXE ROM', pxe(ClientArch.BIOS_X86), 'undionly.kpxe'],
    ['PXE ROM without option 93 is treated as BIOS', pxe(undefined), 'undionly.kpxe'],
    ['x86-64 UEFI', pxe(ClientArch.EFI_X86_64), 'ipxe.efi'],
    ['EFI BC (x86-64 in practice)', pxe(ClientArch.EFI_BC), 'ipxe.efi'],
    ['ARM64 UEFI without a configured file gets nothing', pxe(ClientArch.EFI_ARM64), undefined],
    ['unknown architecture gets nothing', pxe(0x1234), undefined],
    ['plain DHCP client gets nothing', { isPxeClient: false, isHttpClient: false, isIpxe: false, arch: undefined }, undefined],
  ];
  for (const [name, facts, file] of cases) {
    it(name, () => assert.equal(decideBoot(facts, rules, target, undefined)?.file, file));
  }

  it('sends iPXE (even inside a PXE ROM) straight to its script and skips the ProxyDHCP wait', () => {
    const a = decideBoot({ ...pxe(ClientArch.BIOS_X86), isIpxe: true }, rules, target, undefined);
    assert.equal(a?.kind, 'ipxe-script');
    assert.equal(a?.file, 'http://10.99.0.1:8080/boot.ipxe?mac=${net0/mac}&uuid=${uuid}&arch=${buildarch}&serial=${serial}&asset=${asset}');
    assert.equal(a?.ipxeSkipProxyWait, true);
    assert.equal(a?.vendorClass, 'PXEClient');
  });

  it('gives UEFI HTTP Boot an http:// file and echoes HTTPClient', () => {
    const a = decideBoot({ isPxeClient: false, isHttpClient: true, isIpxe: false, arch: ClientArch.HTTP_X86_64 }, rules, target, undefined);
    assert.deepEqual(a, { file: 'http://10.99.0.1:8080/artifacts/ipxe.efi', nextServer: '10.99.0.1', vendorClass: 'HTTPClient', ipxeSkipProxyWait: false, kind: 'http-boot' });
  });

  it('ARM64 UEFI gets its configured file', () => {
    const withArm = { ...rules, files: { ...rules.files, efiArm64: 'arm64/ipxe.efi' } };
    assert.equal(decideBoot(pxe(ClientArch.EFI_ARM64), withArm, target, undefined)?.file, 'arm64/ipxe.efi');
  });

  it('applies per-host overrides', () => {
    const o = { file: 'custom.kpxe', script: 'http://x/y.ipxe', nextServer: '10.99.0.2' };
    assert.equal(decideBoot(pxe(0), rules, target, o)?.file, 'custom.kpxe');
    assert.equal(decideBoot(pxe(0), rules, target, o)?.nextServer, '10.99.0.2');
    assert.equal(decideBoot({ ...pxe(0), isIpxe: true }, rules, target, o)?.file, 'http://x/y.ipxe');
  });

  it('chainloads a firmware iPXE into ipxeChainFile once, then sends the loaded iPXE to its script', () => {
    const o = { ipxeChainFile: 'undionly.kpxe' };
    const rom = { ...pxe(ClientArch.BIOS_X86), isIpxe: true };
    const first = decideBoot(rom, rules, target, o);
    assert.deepEqual(first, { file: 'undionly.kpxe', nextServer: '10.99.0.1', vendorClass: IPXE_CHAIN_MARK, ipxeSkipProxyWait: true, kind: 'ipxe-chain' });
    // undionly.kpxe sends back the vendor class of the ACK that loaded it.
    const second = decideBoot({ ...rom, chainedByPxeha: true }, rules, target, o);
    assert.equal(second?.kind, 'ipxe-script');
    assert.equal(second?.vendorClass, 'PXEClient');
    // A plain PXE ROM is unaffected: it gets its architecture's file as before.
    assert.equal(decideBoot(pxe(ClientArch.BIOS_X86), rules, target, o)?.kind, 'pxe-file');
  });
});
