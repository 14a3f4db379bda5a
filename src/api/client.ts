/**
 * Talks to a node's API: over its Unix socket (the CLI beside a running node, from any network
 * namespace) or over TCP (`--server http://host:8080`). Error envelopes become the same typed
 * errors the store path raises, so the CLI reports both alike.
 */
import { request } from 'node:http';
import { ConfigError, ErrorCodes, PxehaError, type ErrorCode, type ValidationIssue } from '../errors.js';

export type ApiEndpoint = { socketPath: string } | { baseUrl: string };

export class ApiClient {
  constructor(private readonly endpoint: ApiEndpoint) {}

  get description(): string {
    return 'socketPath' in this.endpoint ? this.endpoint.socketPath : this.endpoint.baseUrl;
  }

  /** True when a node answers on the socket. */
  async reachable(): Promise<boolean> {
    try {
      await this.call('GET', '/livez');
      return true;
    } catch {
      return false;
    }
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const target =
        'socketPath' in this.endpoint
          ? { socketPath: this.endpoint.socketPath, path }
          : (() => {
              const u = new URL(path, this.endpoint.baseUrl);
              return { hostname: u.hostname, port: u.port, path: u.pathname + u.search };
            })();
      const req = request(
        {
          ...target,
          method,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
          timeout: 10_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = text;
            }
            if ((res.statusCode ?? 500) < 400) return resolve(parsed as T);
            const e = parsed as { code?: string; message?: string; issues?: ValidationIssue[] };
            if (e.code === 'PXE_ERR_CONFIG_INVALID' && Array.isArray(e.issues)) {
              return reject(new ConfigError(String(e.message ?? '').split(':')[0] ?? 'request', e.issues));
            }
            const code = (e.code && e.code in ErrorCodes ? e.code : 'PXE_ERR_INTERNAL') as ErrorCode;
            reject(new PxehaError(code, e.message ?? `node answered ${res.statusCode}: ${text}`));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from ${this.description}`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}
