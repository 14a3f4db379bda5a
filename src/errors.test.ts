import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { ErrorCodes, PxehaError } from './errors.js';

describe('error registry', () => {
  it('has unique, well-formed codes, each documented in docs/errors.md', async () => {
    const doc = await readFile(new URL('../docs/errors.md', import.meta.url), 'utf8');
    for (const [code, info] of Object.entries(ErrorCodes)) {
      assert.match(code, /^PXE_ERR_[A-Z_]+$/);
      assert.ok(info.status >= 400 && info.status < 600, `${code} has an HTTP error status`);
      assert.ok(doc.includes(`\`${code}\``), `${code} is documented in docs/errors.md`);
    }
    const documented = [...doc.matchAll(/`(PXE_ERR_[A-Z_]+)`/g)].map((m) => m[1]);
    for (const code of documented) assert.ok(code! in ErrorCodes, `${code} in docs/errors.md exists`);
  });

  it('carries code, status and retryability', () => {
    const e = new PxehaError('PXE_ERR_STORE_UNAVAILABLE', 'down');
    assert.equal(e.code, 'PXE_ERR_STORE_UNAVAILABLE');
    assert.equal(e.statusCode, 503);
    assert.equal(e.retryable, true);
    assert.equal(e.name, 'PxehaError');
  });
});
