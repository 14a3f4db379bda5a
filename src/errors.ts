/**
 * Every error pxeha raises on purpose derives from PxehaError and carries a stable code from
 * this one registry (a test keeps the codes unique and documented in docs/errors.md).
 * Retryable errors say so, the way etcd3 marks RecoverableError, so callers need not parse text.
 */
export const ErrorCodes = {
  PXE_ERR_CONFIG_INVALID: { status: 400, retryable: false, doc: 'A configuration file or API body failed schema validation.' },
  PXE_ERR_CONFIG_READ: { status: 400, retryable: false, doc: 'A configuration file could not be read or parsed.' },
  PXE_ERR_DECODE: { status: 400, retryable: false, doc: 'A wire packet could not be decoded.' },
  PXE_ERR_ENCODE: { status: 500, retryable: false, doc: 'A message could not be encoded (for example it does not fit).' },
  PXE_ERR_STORE_UNAVAILABLE: { status: 503, retryable: true, doc: 'The store could not be reached or is closed.' },
  PXE_ERR_STORE_COMPACTED: { status: 410, retryable: false, doc: 'A watch or read asked for a revision older than the store keeps.' },
  PXE_ERR_STORE_BAD_REQUEST: { status: 400, retryable: false, doc: 'A store request was malformed (for example a key repeated in one transaction).' },
  PXE_ERR_STORE_AUTH: { status: 503, retryable: false, doc: 'The store refused the configured credentials or permissions (etcd user, password, client certificate).' },
  PXE_ERR_LEASE_NOT_FOUND: { status: 404, retryable: false, doc: 'A store lease does not exist or has expired.' },
  PXE_ERR_NOT_LEADER: { status: 409, retryable: true, doc: 'An election leadership was lost or never held.' },
  PXE_ERR_POOL_EXHAUSTED: { status: 503, retryable: true, doc: 'No free address is left in the pools of a subnet.' },
  PXE_ERR_SOCKET: { status: 500, retryable: false, doc: 'A network socket could not be opened or configured.' },
  PXE_ERR_NOT_FOUND: { status: 404, retryable: false, doc: 'The requested object does not exist.' },
  PXE_ERR_BAD_REQUEST: { status: 400, retryable: false, doc: 'An HTTP request was malformed (for example a body that is not JSON).' },
  PXE_ERR_INTERNAL: { status: 500, retryable: false, doc: 'An unexpected failure inside pxeha; the node log has the details.' },
  PXE_ERR_CONFLICT: { status: 409, retryable: true, doc: 'The request conflicts with the current state (an object in use, or a concurrent change).' },
  PXE_ERR_PATH_REFUSED: { status: 403, retryable: false, doc: 'An artifact path was refused: outside the root, a symlink out of it, NUL bytes, too long, or not a regular file.' },
  PXE_ERR_UNAUTHORIZED: { status: 401, retryable: false, doc: 'An API request carried no credential, or one that is not a live token or session.' },
  PXE_ERR_FORBIDDEN: { status: 403, retryable: false, doc: 'The credential is valid but its role is too weak for the request, or a machine callback token does not match its MAC.' },
  PXE_ERR_HTTPS_REQUIRED: { status: 403, retryable: false, doc: 'The API and dashboard are served over HTTPS on this node (http.tls); its plain-HTTP port serves boot paths only.' },
  PXE_ERR_CHUNK_CORRUPT: { status: 500, retryable: false, doc: 'An image chunk on this node does not match its SHA-256 (or its recorded size); it was quarantined and none of its bytes were served.' },
  PXE_ERR_IMAGE_NOT_HELD: { status: 503, retryable: true, doc: 'This node does not hold the image version a pinned path names whole and verified (not yet replicated, or a chunk was found corrupt and is being fetched again); another holder serves it.' },
} as const satisfies Record<string, { status: number; retryable: boolean; doc: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

export class PxehaError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly retryable: boolean;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.statusCode = ErrorCodes[code].status;
    this.retryable = ErrorCodes[code].retryable;
  }
}

export interface ValidationIssue {
  /** JSON pointer of the offending field, e.g. `/subnets/0/pools/1/start`. */
  path: string;
  message: string;
}

export class ConfigError extends PxehaError {
  readonly issues: readonly ValidationIssue[];
  constructor(what: string, issues: readonly ValidationIssue[]) {
    super('PXE_ERR_CONFIG_INVALID', `${what}: ${issues.map((i) => `${i.path || '/'} ${i.message}`).join('; ')}`);
    this.issues = issues;
  }
}
