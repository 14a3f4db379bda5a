/**
 * Talks to a running node over its Unix socket, so the CLI works the same whether or not a
 * node holds the embedded store open.
 */
import { request } from 'node:http';
import { ConfigError, ErrorCodes, PxehaError, type ErrorCode, type ValidationIssue } from '../errors.js';

export class LocalApiClient {
  constructor(private readonly socketPath: string) {}

  /** True when a node answers on the socket. */
  async reachable(): Promise<boolean> {
    try {
      await this.call('GET', '/healthz');
      return true;
    } catch {
      return false;
    }
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method,
          path,
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
            const code = (e.code && e.code in ErrorCodes ? e.code : 'PXE_ERR_STORE_UNAVAILABLE') as ErrorCode;
            reject(new PxehaError(code, `node answered ${res.statusCode}: ${e.message ?? text}`));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from ${this.socketPath}`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}
