import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cleanConsole, qemuArgs, stagesInConsole } from './qemu.js';

describe('qemuArgs', () => {
  const base = { mac: '52:54:00:99:01:01', tap: 'tap0', consoleFile: '/tmp/c.log' };

  it('BIOS: SeaBIOS with the iPXE ROM on e1000, serial console through fw_cfg, no default devices', () => {
    const args = qemuArgs({ ...base, firmware: 'bios', serconFile: '/tmp/sercon' });
    const line = args.join(' ');
    assert.ok(args.includes('-nodefaults'), 'no user-mode NIC');
    assert.match(line, /-accel tcg/);
    assert.match(line, /-vga none/);
    assert.match(line, /-fw_cfg name=etc\/sercon-port,file=\/tmp\/sercon/);
    assert.match(line, /-device e1000,netdev=n0,mac=52:54:00:99:01:01,romfile=\/usr\/lib\/ipxe\/qemu\/efi-e1000\.rom,bootindex=1/);
    assert.match(line, /-netdev tap,id=n0,ifname=tap0,script=no,downscript=no/);
    assert.match(line, /-serial file:\/tmp\/c\.log/);
  });

  it('UEFI: OVMF with its own variable store and a virtio NIC without option ROM', () => {
    const line = qemuArgs({ ...base, firmware: 'uefi', uefiVarsFile: '/tmp/vars.fd' }).join(' ');
    assert.match(line, /if=pflash,format=raw,unit=0,readonly=on,file=\/usr\/share\/OVMF\/OVMF_CODE_4M\.fd/);
    assert.match(line, /if=pflash,format=raw,unit=1,file=\/tmp\/vars\.fd/);
    assert.match(line, /virtio-net-pci,netdev=n0,mac=52:54:00:99:01:01,romfile=,bootindex=1/);
  });

  it('refuses a machine without its firmware files', () => {
    assert.throws(() => qemuArgs({ ...base, firmware: 'bios' }), /serconFile/);
    assert.throws(() => qemuArgs({ ...base, firmware: 'uefi' }), /uefiVarsFile/);
  });
});

describe('console', () => {
  it('strips terminal escapes and carriage-return overprints', () => {
    assert.equal(cleanConsole('\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\nPress Ctrl-B...\rnet0: up\r\n'), 'SeaBIOS\nnet0: up\n');
    // iPXE's download progress, erased and redrawn, then the outcome (core/monojob.c).
    const erase = '\b\b\b\b    \b\b\b\b';
    assert.equal(cleanConsole(`http://10.99.0.3:8080/initrd.bin... 34%${erase} 98%${erase} ok\r\n`), 'http://10.99.0.3:8080/initrd.bin... ok\n');
    assert.equal(cleanConsole(`http://10.99.0.2:8080/initrd.bin...  7%${erase} Connection reset\r\n`), 'http://10.99.0.2:8080/initrd.bin... Connection reset\n');
  });

  it('finds boot stages in the order they happened (OVMF, then iPXE)', () => {
    const text = [
      'BdsDxe: loading Boot0001 "UEFI PXEv4 (MAC:525400990102)"',
      '>>Start PXE over IPv4.',
      ' Downloading NBP file...',
      'iPXE initialising devices...ok',
      'http://10.99.0.1:8080/boot.ipxe... ok',
      'http://10.99.0.1:8080/boot/done... ok',
    ].join('\n');
    assert.deepEqual(stagesInConsole(text), ['firmware', 'dhcp', 'tftp', 'http', 'done']);
  });
});
