/**
 * `pxeha tokens create|ls|revoke`: API tokens (src/auth/tokens.ts). Through the node's Unix
 * socket (local root is admin), through --server with an admin token, or straight into the
 * store when no node runs.
 */
import { Option, type Command } from 'commander';
import Table from 'cli-table3';
import { ROLES, type Role } from '../auth/roles.js';
import { PxehaError } from '../errors.js';
import { withAccess, type AccessFlags } from './access.js';

export function registerTokenCommands(program: Command, accessOptions: (cmd: Command) => Command): void {
  const tokens = program.command('tokens').description('API tokens: create (shown once), list, revoke');
  accessOptions(
    tokens
      .command('create')
      .description('create a token and print it once (only its SHA-256 is stored)')
      .addOption(new Option('--role <role>', 'what the token may do').choices([...ROLES]).makeOptionMandatory())
      .option('--name <name>', 'a name to recognise it by in `pxeha tokens ls`')
      .addOption(new Option('-o, --output <format>', 'output format').choices(['text', 'json']).default('text')),
  ).action(async (opts: AccessFlags & { role: Role; name?: string; output: 'text' | 'json' }) => {
    const created = await withAccess(opts, (a) => a.createToken({ role: opts.role, ...(opts.name ? { name: opts.name } : {}) }));
    if (opts.output === 'json') {
      console.log(JSON.stringify(created, null, 2));
      return;
    }
    console.log(created.token);
    console.error(`token ${created.id} (${created.name}, role ${created.role}) created; it is shown only this once`);
  });
  accessOptions(
    tokens
      .command('ls')
      .alias('list')
      .description('list tokens: id, name, role, created (never the secret)')
      .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table')),
  ).action(async (opts: AccessFlags & { output: 'table' | 'json' }) => {
    const list = await withAccess(opts, (a) => a.listTokens());
    list.sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
    if (opts.output === 'json') {
      console.log(JSON.stringify(list, null, 2));
      return;
    }
    const table = new Table({ head: ['id', 'name', 'role', 'created'], style: { head: [], border: [] } });
    for (const t of list) table.push([t.id, t.name, t.role, new Date(t.createdAtMs).toISOString()]);
    console.log(table.toString());
  });
  accessOptions(tokens.command('revoke <id>').description('revoke a token (its id, or the token itself); refused at once by every node')).action(
    async (id: string, opts: AccessFlags) => {
      const deleted = await withAccess(opts, (a) => a.revokeToken(id));
      if (!deleted) throw new PxehaError('PXE_ERR_NOT_FOUND', `token ${id} does not exist`);
      console.log(`token ${id} revoked`);
    },
  );
}
