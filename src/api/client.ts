/**
 * Talks to a node's API: over its Unix socket (the CLI beside a running node, from any network
 * namespace) or over TCP (`--server http://host:8080`). Error envelopes become the same typed
 * errors the store path raises, so the CLI reports both alike.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { ConfigError, ErrorCodes, PxehaError, type ErrorCode, type ValidationIssue } from '../errors.js';

/**
 * A Unix socket (trusted as local root: no token), or a URL (http:// or https://) with a token
 * (`--token` or PXEHA_TOKEN) and, for a certificate no system CA signed, the CA's PEM.
 */
export type ApiEndpoint = { socketPath: string } | { baseUrl: string; token?: string; ca?: Buffer };

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

  /**
   * One request. `body` is sent as JSON; `options.bytes` as application/octet-stream instead
   * (a chunk upload). `options.headers` adds headers (e.g. If-Match).
   */
  async call<T>(method: string, path: string, body?: unknown, options: { bytes?: Uint8Array; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<T> {
    const payload = options.bytes !== undefined ? Buffer.from(options.bytes.buffer, options.bytes.byteOffset, options.bytes.byteLength) : body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const endpoint = this.endpoint;
      const headers: Record<string, string | number> = {
        ...(payload ? { 'content-type': options.bytes !== undefined ? 'application/octet-stream' : 'application/json', 'content-length': payload.length } : {}),
        ...options.headers,
      };
      let send: (options: RequestOptions, onResponse: (res: IncomingMessage) => void) => ClientRequest = httpRequest;
      let target: RequestOptions;
      if ('socketPath' in endpoint) {
        target = { socketPath: endpoint.socketPath, path };
      } else {
        const u = new URL(path, endpoint.baseUrl);
        target = { hostname: u.hostname, port: u.port, path: u.pathname + u.search };
        if (endpoint.token) headers.authorization = `Bearer ${endpoint.token}`;
        if (u.protocol === 'https:') {
          send = httpsRequest;
          if (endpoint.ca) target = { ...target, ca: endpoint.ca } as RequestOptions;
        }
      }
      const req = send(
        {
          ...target,
          method,
          headers,
          timeout: options.timeoutMs ?? 10_000,
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
