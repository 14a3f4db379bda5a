import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assignProfileName, selects } from './assign.js';

type Candidate = Parameters<typeof assignProfileName>[1][number];

const profiles: Candidate[] = [
  { name: 'debian', selector: undefined },
  { name: 'web', selector: { role: 'web' } },
  { name: 'web-a1', selector: { role: 'web', rack: 'a1' } },
  { name: 'any-web', selector: { role: 'web' } },
  { name: 'empty', selector: {} },
];

describe('assignProfileName', () => {
  const cases: [string, Parameters<typeof assignProfileName>[0], string | undefined][] = [
    ['own profile wins over selectors', { profile: 'debian', labels: { role: 'web' } }, 'debian'],
    ['most specific selector', { labels: { role: 'web', rack: 'a1', os: 'x' } }, 'web-a1'],
    ['equal specificity: bytewise name order', { labels: { role: 'web', rack: 'b2' } }, 'any-web'],
    ['no label matches: default', { labels: { role: 'db' } }, 'menu'],
    ['no labels: default', {}, 'menu'],
    ['unknown machine: default', undefined, 'menu'],
  ];
  for (const [name, machine, want] of cases) {
    it(name, () => assert.equal(assignProfileName(machine, profiles, 'menu'), want));
  }

  it('no default and no match: none', () => {
    assert.equal(assignProfileName({ labels: { role: 'db' } }, profiles, undefined), undefined);
  });
});

describe('selects', () => {
  it('needs every selector label, exactly', () => {
    assert.equal(selects({ role: 'web' }, { role: 'web', rack: 'a1' }), true);
    assert.equal(selects({ role: 'web' }, { role: 'Web' }), false);
    assert.equal(selects({ role: 'web', rack: 'a1' }, { role: 'web' }), false);
  });

  it('an empty selector selects nothing', () => assert.equal(selects({}, { role: 'web' }), false));

  it('inherited properties are not labels', () => {
    assert.equal(selects({ constructor: 'x' }, {}), false);
    assert.equal(selects({ toString: 'x' }, Object.create({ toString: 'x' }) as Record<string, string>), false);
  });
});
