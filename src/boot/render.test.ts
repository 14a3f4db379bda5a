import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validate } from '../config/load.js';
import { MachineSchema, ProfileSchema, type Machine, type Profile } from '../config/schema.js';
import { renderBootScript, renderTemplate, templateView, type RenderInput } from './render.js';

const profile = (p: unknown): Profile => validate<Profile>(ProfileSchema, p, 'profile');
const machine: Machine = validate<Machine>(
  MachineSchema,
  { name: 'web1', mac: '52:54:00:12:34:56', profile: 'debian', hostname: 'web1', labels: { rack: 'a1' } },
  'machine',
);
const node = { name: 'lab1', address: '10.99.0.1', httpPort: 8080 };
const facts = { mac: '52:54:00:12:34:56', uuid: '12345678-9abc-def0-1234-56789abcdef0', arch: 'x86_64', ip: '10.99.0.100' };
const input = (p: Profile | undefined, extra: Partial<RenderInput> = {}): RenderInput => ({ facts, machine, profile: p, status: undefined, node, ...extra });

const debian = profile({
  name: 'debian',
  boot: {
    kind: 'kernel',
    kernel: 'debian-12/linux',
    initrds: ['debian-12/initrd.gz', 'http://mirror.example/extra.cpio'],
    args: 'auto=true priority=critical url={{files.preseed_cfg}} hostname={{hostname}} rack={{labels.rack}} console=ttyS0',
  },
  once: true,
  files: { 'preseed.cfg': 'd-i netcfg/get_hostname string {{hostname}}\nd-i preseed/late_command string wget -q -O- {{callbackUrl}}\n' },
});

describe('renderBootScript', () => {
  it('kernel profile: whole script', () => {
    assert.equal(
      renderBootScript(input(debian)),
      [
        '#!ipxe',
        '# pxeha lab1: machine web1 (52:54:00:12:34:56), profile debian',
        'kernel http://10.99.0.1:8080/artifacts/debian-12/linux initrd=initrd.gz initrd=extra.cpio auto=true priority=critical url=http://10.99.0.1:8080/machines/52%3A54%3A00%3A12%3A34%3A56/files/preseed.cfg hostname=web1 rack=a1 console=ttyS0',
        'initrd http://10.99.0.1:8080/artifacts/debian-12/initrd.gz',
        'initrd http://mirror.example/extra.cpio',
        'boot',
        '',
      ].join('\n'),
    );
  });

  it('kernel profile with three boot servers: each file from the first, then the fallbacks', () => {
    const servers = [node, { name: 'lab2', address: '10.99.0.2', httpPort: 8080 }, { name: 'lab3', address: '10.99.0.3', httpPort: 8081 }];
    const args = 'initrd=initrd.gz initrd=extra.cpio auto=true priority=critical url=http://10.99.0.1:8080/machines/52%3A54%3A00%3A12%3A34%3A56/files/preseed.cfg hostname=web1 rack=a1 console=ttyS0';
    assert.equal(
      renderBootScript(input(debian, { servers })),
      [
        '#!ipxe',
        '# pxeha lab1: machine web1 (52:54:00:12:34:56), profile debian',
        '# boot servers: lab1, lab2, lab3',
        `kernel http://10.99.0.1:8080/artifacts/debian-12/linux ${args} || kernel http://10.99.0.2:8080/artifacts/debian-12/linux ${args} || kernel http://10.99.0.3:8081/artifacts/debian-12/linux ${args}`,
        'initrd http://10.99.0.1:8080/artifacts/debian-12/initrd.gz || initrd http://10.99.0.2:8080/artifacts/debian-12/initrd.gz || initrd http://10.99.0.3:8081/artifacts/debian-12/initrd.gz',
        // An absolute URL is the same from every server: tried once.
        'initrd http://mirror.example/extra.cpio',
        'boot',
        '',
      ].join('\n'),
    );
  });

  it('offers the boot servers to script templates, best first', () => {
    const servers = [{ name: 'lab2', address: '10.99.0.2', httpPort: 8080 }, node];
    const p = profile({ name: 's', boot: { kind: 'script', script: 'chain{{#servers}} {{url}}/artifacts/x.ipxe{{/servers}}' } });
    assert.equal(renderTemplate('{{#servers}}{{name}}={{url}};{{/servers}}', templateView(input(p, { servers }))), 'lab2=http://10.99.0.2:8080;lab1=http://10.99.0.1:8080;');
  });

  it('installed once-profile: local boot with the reason', () => {
    const status = { mac: facts.mac, firstSeenMs: 0, lastSeenMs: 0, installedAtMs: Date.UTC(2026, 10, 24, 12, 0, 0) };
    assert.equal(
      renderBootScript(input(debian, { status })),
      [
        '#!ipxe',
        '# pxeha lab1: machine web1 (52:54:00:12:34:56), profile debian',
        '# installed at 2026-11-24T12:00:00.000Z; reprovision to install again',
        'echo pxeha: installed, booting from local disk',
        'sanboot --no-describe --drive 0x80 || exit',
        '',
      ].join('\n'),
    );
  });

  it('script profile: template rendered, iPXE settings untouched, one shebang', () => {
    const p = profile({ name: 'menu', boot: { kind: 'script', script: '#!ipxe\necho hello {{hostname}} on ${net0/ip}\nchain {{callbackUrl}}\n\n' } });
    assert.equal(
      renderBootScript(input(p)),
      [
        '#!ipxe',
        '# pxeha lab1: machine web1 (52:54:00:12:34:56), profile menu',
        'echo hello web1 on ${net0/ip}',
        'chain http://10.99.0.1:8080/boot/done?mac=52%3A54%3A00%3A12%3A34%3A56',
        '',
      ].join('\n'),
    );
  });

  it('chain and localboot profiles', () => {
    const chain = profile({ name: 'c', boot: { kind: 'chain', url: 'http://{{node.address}}:9000/{{mac}}.ipxe' } });
    assert.equal(renderBootScript(input(chain)).split('\n')[2], 'chain http://10.99.0.1:9000/52:54:00:12:34:56.ipxe');
    const local = profile({ name: 'l', boot: { kind: 'localboot' } });
    assert.equal(renderBootScript(input(local)).split('\n')[2], 'exit');
  });

  it('unknown machine without a default profile exits to the next boot device', () => {
    assert.equal(
      renderBootScript({ ...input(undefined), machine: undefined }),
      ['#!ipxe', '# pxeha lab1: unknown machine 52:54:00:12:34:56', 'echo pxeha: no profile for this machine; trying the next boot device', 'exit', ''].join('\n'),
    );
  });

  it('templates cannot run code and do not HTML-escape', () => {
    const view = templateView(input(debian));
    assert.equal(renderTemplate('{{#labels}}{{rack}}{{/labels}} <{{hostname}}> & {{constructor}}', view), 'a1 <web1> & ');
  });

  it("puts the machine's callback token in callbackUrl, and nothing of any other machine in the view", () => {
    const token = 'A'.repeat(43);
    const p = profile({ name: 'menu', boot: { kind: 'script', script: 'chain {{callbackUrl}}' } });
    assert.match(renderBootScript(input(p, { callbackToken: token })), /^chain http:\/\/10\.99\.0\.1:8080\/boot\/done\?mac=52%3A54%3A00%3A12%3A34%3A56&token=A{43}$/m);
    // The view is built from this machine's input alone: every MAC in it is this machine's.
    const view = JSON.stringify(templateView(input(debian, { callbackToken: token })));
    const macs = new Set([...view.matchAll(/52(?::|%3A)54(?::|%3A)00(?::|%3A)[0-9a-f]{2}(?::|%3A)[0-9a-f]{2}(?::|%3A)[0-9a-f]{2}/gi)].map((m) => decodeURIComponent(m[0])));
    assert.deepEqual([...macs], ['52:54:00:12:34:56']);
    assert.deepEqual(Object.keys(templateView(input(debian))).sort(), ['arch', 'asset', 'callbackUrl', 'files', 'hostname', 'ip', 'labels', 'mac', 'machine', 'node', 'serial', 'servers', 'uuid']);
  });
});

describe('renderBootScript: image-backed profiles', () => {
  const V1 = '1'.repeat(64);
  const live = profile({
    name: 'live',
    image: 'demo@stable',
    boot: { kind: 'kernel', kernel: 'boot/vmlinuz', initrds: ['boot/initrd.img'], args: 'console=ttyS0 host={{hostname}}' },
  });
  const servers = [node, { name: 'lab2', address: '10.99.0.2', httpPort: 8080 }];
  const image = { name: 'demo', version: V1, channel: 'stable' };

  it('kernel profile: every URL names the version the channel resolved to, on each holder', () => {
    const base = (n: number): string => `http://10.99.0.${n}:8080/images/demo/${V1}/boot`;
    const args = 'initrd=initrd.img console=ttyS0 host=web1';
    assert.equal(
      renderBootScript(input(live, { servers, image })),
      [
        '#!ipxe',
        '# pxeha lab1: machine web1 (52:54:00:12:34:56), profile live',
        `# image demo@stable = version ${V1}`,
        '# boot servers: lab1, lab2',
        `kernel ${base(1)}/vmlinuz ${args} || kernel ${base(2)}/vmlinuz ${args}`,
        `initrd ${base(1)}/initrd.img || initrd ${base(2)}/initrd.img`,
        'boot',
        '',
      ].join('\n'),
    );
  });

  it('sanboot profile: one multipath drive over every holder', () => {
    const disk = profile({ name: 'diskless', image: `demo@${V1}`, boot: { kind: 'sanboot', disk: 'disk.img' } });
    const three = [...servers, { name: 'lab3', address: '10.99.0.3', httpPort: 8081 }, { name: 'lab4', address: '10.99.0.4', httpPort: 8080 }];
    assert.equal(
      renderBootScript(input(disk, { servers: three, image: { name: 'demo', version: V1 } })),
      [
        '#!ipxe',
        '# pxeha lab1: machine web1 (52:54:00:12:34:56), profile diskless',
        `# image demo@${V1} = version ${V1}`,
        `sanboot http://10.99.0.1:8080/images/demo/${V1}/disk.img http://10.99.0.2:8080/images/demo/${V1}/disk.img http://10.99.0.3:8081/images/demo/${V1}/disk.img http://10.99.0.4:8080/images/demo/${V1}/disk.img || exit`,
        '',
      ].join('\n'),
    );
  });

  it('an image nobody serves: says why and exits, naming no server', () => {
    const script = renderBootScript(input(live, { servers: [], image, imageProblem: 'no node holds version 111111111111 of image demo whole yet' }));
    assert.equal(
      script,
      [
        '#!ipxe',
        '# pxeha lab1: machine web1 (52:54:00:12:34:56), profile live',
        '# no node holds version 111111111111 of image demo whole yet',
        'echo pxeha: no node holds version 111111111111 of image demo whole yet; trying the next boot device',
        'exit',
        '',
      ].join('\n'),
    );
    assert.match(renderBootScript(input(live)), /image demo@stable is not known to this node/);
  });

  it('refuses malformed image references in the schema, with the field path', () => {
    for (const bad of ['demo', 'demo@', '@stable', 'Demo@stable', `demo@${'1'.repeat(63)}g`]) {
      assert.throws(() => profile({ name: 'x', image: bad, boot: { kind: 'localboot' } }), /\/image/);
    }
  });
});
