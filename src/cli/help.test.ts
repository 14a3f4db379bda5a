/** Every command explains itself (`pxeha <command> --help`), and every table has `--output json`. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from './main.js';

function walk(cmd: Command, path: string[] = []): { path: string[]; cmd: Command }[] {
  return cmd.commands.flatMap((c) => [{ path: [...path, c.name()], cmd: c }, ...walk(c, [...path, c.name()])]);
}

describe('pxeha --help', () => {
  it('describes every command and every option', () => {
    const all = walk(buildProgram());
    assert.ok(all.length > 20, `${all.length} commands`);
    for (const { path, cmd } of all) {
      assert.ok(cmd.description().length > 5, `pxeha ${path.join(' ')} has a description`);
      const help = cmd.helpInformation();
      assert.match(help, new RegExp(`^Usage: pxeha ${path.join(' ')}`, 'm'), path.join(' '));
    }
  });

  it('offers --output json on every command that prints a table', () => {
    const all = walk(buildProgram());
    const tableCommands = ['leases', 'machines list', 'profiles list', 'get subnets', 'get leases', 'get machines', 'get profiles', 'cluster status', 'cluster placement', 'cluster rebalance', 'tokens ls', 'images ls', 'images status', 'images show'];
    for (const name of tableCommands) {
      const found = all.find((c) => c.path.join(' ') === name);
      assert.ok(found, name);
      const output = found.cmd.options.find((o) => o.long === '--output');
      assert.ok(output, `${name} has --output`);
      assert.ok(output.argChoices?.includes('json'), `${name} --output json`);
    }
    // Every file that builds a table is one of the above (a new table needs a row here).
    const dir = new URL('./', import.meta.url);
    const withTables = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && readFileSync(new URL(f, dir), 'utf8').includes('new Table('));
    assert.deepEqual(withTables.sort(), ['cluster.ts', 'images.ts', 'main.ts', 'tokens.ts']);
  });
});
