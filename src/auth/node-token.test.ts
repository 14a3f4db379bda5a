import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isNodeToken, nodeToken, nodeTokenName } from './node-token.js';
import { requiredRole, roleAllows } from './roles.js';

describe('node-to-node bearer', () => {
  const key = Buffer.alloc(32, 7);
  it('names its node under the right key only', () => {
    const t = nodeToken(key, 'node2.lab');
    assert.ok(isNodeToken(t));
    assert.equal(nodeTokenName(key, t), 'node2.lab');
    assert.equal(nodeTokenName(Buffer.alloc(32, 8), t), undefined);
    assert.equal(nodeTokenName(key, t.replace('node2.lab', 'node3.lab')), undefined);
    assert.equal(nodeTokenName(key, `${t}x`), undefined);
    assert.equal(nodeTokenName(key, 'pxeha-node.'), undefined);
    assert.equal(nodeTokenName(key, 'pxeha_abc'), undefined);
  });
  it('the node route role admits admin tokens and no other role', () => {
    assert.equal(roleAllows('admin', 'node'), true);
    assert.equal(roleAllows('operator', 'node'), false);
    assert.equal(roleAllows('viewer', 'node'), false);
    assert.equal(requiredRole('GET', 'node'), 'node');
    assert.equal(roleAllows('viewer', 'viewer'), true);
    assert.equal(roleAllows('viewer', 'operator'), false);
  });
});
