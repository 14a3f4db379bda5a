/**
 * What iPXE fetches: its per-machine script, per-machine files (kickstart, preseed, cloud-init)
 * and the "done" callback that finishes an install-once profile.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Auth } from '../../auth/auth.js';
import { renderBootScript, renderTemplate, templateView, type FirmwareFacts, type ServingNode } from '../../boot/render.js';
import { normalizeMacText } from '../../inventory/inventory.js';
import type { HttpContext } from '../context.js';
import type { ResolvedImage } from '../../images/image-ref.js';

const MacParam = Type.String({ pattern: '^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$' });

/** iPXE sends empty values for settings it lacks (`${serial}` of a VM, say); they are optional. */
const BootQuery = Type.Object(
  {
    mac: MacParam,
    uuid: Type.Optional(Type.String({ maxLength: 64 })),
    arch: Type.Optional(Type.String({ maxLength: 32 })),
    serial: Type.Optional(Type.String({ maxLength: 128 })),
    asset: Type.Optional(Type.String({ maxLength: 128 })),
    manufacturer: Type.Optional(Type.String({ maxLength: 128 })),
    product: Type.Optional(Type.String({ maxLength: 128 })),
  },
  { additionalProperties: false },
);
type BootQueryT = { mac: string; uuid?: string; arch?: string; serial?: string; asset?: string; manufacturer?: string; product?: string };

function servingNode(ctx: HttpContext, req: FastifyRequest): ServingNode {
  // The address the machine reached us at is one it can reach again.
  const local = req.socket.localAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1';
  return { name: ctx.nodeName, address: ctx.advertiseAddress ?? local, httpPort: ctx.httpPort };
}

function factsOf(q: BootQueryT, ip: string | undefined): FirmwareFacts {
  const facts: FirmwareFacts = { mac: normalizeMacText(q.mac) };
  for (const k of ['uuid', 'arch', 'serial', 'asset', 'manufacturer', 'product'] as const) {
    const v = q[k]?.trim();
    if (v) facts[k] = v;
  }
  if (ip) facts.ip = ip.replace(/^::ffff:/, '');
  return facts;
}

/** Why an image-backed profile cannot boot now, or undefined when some node serves its version. */
function imageUnavailable(ctx: HttpContext, ref: string, image: ResolvedImage | undefined, servers: readonly ServingNode[] | undefined): string | undefined {
  if (!image) return `image ${ref} is not known (no such image, channel or version)`;
  const what = `version ${image.version.slice(0, 12)} of image ${image.name}`;
  if (servers !== undefined) return servers.length === 0 ? `no node holds ${what} whole yet` : undefined;
  // A single node serves everything itself: only if it holds the version.
  const held = ctx.imageFiles?.held() ?? [];
  return [...held].includes(image.version) ? undefined : `this node does not hold ${what} whole yet`;
}

export function registerBootRoutes(app: FastifyInstance, ctx: HttpContext, auth: Auth): void {
  app.get<{ Querystring: BootQueryT }>('/boot.ipxe', { schema: { querystring: BootQuery, hide: true } }, async (req, reply) => {
    const facts = factsOf(req.query, req.ip);
    const machine = ctx.inventory.findMachine(facts.mac, facts.uuid);
    const profile = ctx.inventory.profileFor(machine, ctx.cluster());
    const { mac: _, ...seen } = facts;
    const status = await ctx.inventory.recordStage(facts.mac, 'script', ctx.nodeName, ctx.clock.now(), seen);
    ctx.metrics.bootStages.inc({ stage: 'script' });
    if (!machine) ctx.log.info({ mac: facts.mac, uuid: facts.uuid }, 'unknown machine discovered');
    // The image's channel is resolved once, here: the boot servers and every URL of the script
    // name that version, so a switch during this boot cannot mix versions.
    const image = profile?.image !== undefined ? ctx.resolveImage?.(profile.image) : undefined;
    const servers = ctx.bootServers?.(facts.mac, profile, facts.ip, image);
    const imageProblem = profile?.image === undefined ? undefined : imageUnavailable(ctx, profile.image, image, servers);
    if (imageProblem) ctx.log.warn({ mac: facts.mac, image: profile?.image, problem: imageProblem }, 'image of the profile not served');
    const callbackToken = await auth.machineToken(facts.mac);
    const script = renderBootScript({
      facts,
      machine,
      profile,
      status,
      node: servingNode(ctx, req),
      callbackToken,
      ...(servers ? { servers } : {}),
      ...(image ? { image } : {}),
      ...(imageProblem ? { imageProblem } : {}),
    });
    return reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store').send(script);
  });

  app.get<{ Params: { mac: string; name: string } }>(
    '/machines/:mac/files/:name',
    { schema: { params: Type.Object({ mac: MacParam, name: Type.String({ maxLength: 128 }) }), hide: true } },
    async (req, reply) => {
      const mac = normalizeMacText(req.params.mac);
      const machine = ctx.inventory.findMachine(mac, undefined);
      const profile = ctx.inventory.profileFor(machine, ctx.cluster());
      const template = profile?.files[req.params.name];
      if (template === undefined) {
        return reply.code(404).send({ statusCode: 404, code: 'PXE_ERR_NOT_FOUND', error: 'Not Found', message: `no file ${req.params.name} for ${mac}` });
      }
      const callbackToken = await auth.machineToken(mac);
      const view = templateView({ facts: { mac, ip: req.ip }, machine, profile, status: ctx.inventory.status(mac), node: servingNode(ctx, req), callbackToken });
      return reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store').send(renderTemplate(template, view));
    },
  );

  // GET so that an iPXE script can call it (`imgfetch`/`chain`), POST for installers. What an
  // installer posts is not read: `curl -d ""` and `wget --post-data` send a form content type
  // that Fastify would refuse with 415, so this route (alone, in its own scope) takes any body.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 64 * 1024 }, (_req, _body, done) => done(null, undefined));
    registerDoneRoute(scope, ctx, auth);
  });
}

/**
 * The callback changes the state of the MAC it names only with that MAC's token, which the
 * machine's script and files carry in their callback URL (src/auth/machine-token.ts).
 */
function registerDoneRoute(app: FastifyInstance, ctx: HttpContext, auth: Auth): void {
  app.route<{ Querystring: { mac: string; token?: string } }>({
    method: ['GET', 'POST'],
    url: '/boot/done',
    schema: {
      querystring: Type.Object({ mac: MacParam, token: Type.Optional(Type.String({ maxLength: 128 })) }, { additionalProperties: false }),
      hide: true,
    },
    handler: async (req, reply) => {
      const mac = normalizeMacText(req.query.mac);
      const token = req.query.token;
      if (token === undefined || token === '' || !(await auth.machineTokenOk(mac, token))) {
        const reason = token === undefined || token === '' ? 'missing' : 'mismatch';
        ctx.metrics.bootCallbackRefused.inc({ reason });
        ctx.log.warn({ mac, ip: req.ip, reason }, 'boot callback refused');
        const message = `the callback for ${mac} needs that machine's token: use the callback URL of its own script (${reason === 'missing' ? 'no token given' : 'the token is not the token of this MAC'})`;
        return reply.code(403).send({ statusCode: 403, code: 'PXE_ERR_FORBIDDEN', error: 'Forbidden', message });
      }
      const machine = ctx.inventory.findMachine(mac, undefined);
      const profile = ctx.inventory.profileFor(machine, ctx.cluster());
      const now = ctx.clock.now();
      if (profile?.once) await ctx.inventory.markInstalled(mac, ctx.nodeName, now);
      else await ctx.inventory.recordStage(mac, 'done', ctx.nodeName, now);
      ctx.metrics.bootStages.inc({ stage: 'done' });
      ctx.log.info({ mac, machine: machine?.name, once: profile?.once ?? false }, 'boot complete');
      return reply.type('text/plain; charset=utf-8').send(`#!ipxe\necho pxeha: boot of ${mac} recorded as complete\n`);
    },
  });
}
