/**
 * Foreign errors stop here: everything the etcd3 client, grpc-js or cockatiel throws is
 * translated into a PxehaError before it leaves src/store/etcd/ (STYLE.md: "Foreign errors are
 * translated at the boundary").
 *
 * etcd3's castGrpcError picks a class from the message first and the gRPC status code second,
 * so the class alone is not enough: "required revision has been compacted" and "required
 * revision is a future revision" are both OutOfRange, and arrive as the same class. The etcd
 * server messages matched here are etcd's rpctypes (api/v3rpc/rpctypes/error.go), stable
 * across 3.x.
 */
import { isBrokenCircuitError } from 'cockatiel';
import {
  ClientClosedError, EtcdAuthenticationFailedError, EtcdInvalidAuthTokenError, EtcdLeaseInvalidError,
  EtcdPermissionDeniedError, GRPCInvalidArgumentError, GRPCUnauthenticatedError, isRecoverableError,
} from 'etcd3';
import { PxehaError } from '../../errors.js';

/** gRPC status codes we look at (grpc/status.h). */
const GRPC_INVALID_ARGUMENT = 3;
const GRPC_PERMISSION_DENIED = 7;
const GRPC_OUT_OF_RANGE = 11;
const GRPC_UNAUTHENTICATED = 16;

const COMPACTED = 'required revision has been compacted';
const FUTURE_REVISION = 'required revision is a future revision';
const LEASE_NOT_FOUND = 'requested lease not found';

/**
 * Translates whatever a call to etcd threw. `what` names the operation for the message.
 * `outcomeUnknown` marks a write that may have been applied (its reply was lost): the message
 * says so, and the caller must re-read before acting, as with any distributed compare-and-set.
 */
export function toStoreError(err: unknown, what: string, options: { outcomeUnknown?: boolean } = {}): PxehaError {
  if (err instanceof PxehaError) return err;
  const message = messageOf(err);
  const code = grpcCode(err);
  if (err instanceof EtcdLeaseInvalidError || message.includes(LEASE_NOT_FOUND)) {
    return new PxehaError('PXE_ERR_LEASE_NOT_FOUND', `${what}: ${stripPrefix(message)}`, { cause: err });
  }
  if (message.includes(COMPACTED)) {
    return new PxehaError('PXE_ERR_STORE_COMPACTED', `${what}: ${stripPrefix(message)}`, { cause: err });
  }
  // Before the invalid-argument case: etcd sends "user name is empty" as InvalidArgument.
  if (isAuthError(err)) {
    return new PxehaError('PXE_ERR_STORE_AUTH', `${what}: etcd refused the credentials: ${stripPrefix(message)}`, { cause: err });
  }
  if (message.includes(FUTURE_REVISION) || err instanceof GRPCInvalidArgumentError || code === GRPC_INVALID_ARGUMENT || code === GRPC_OUT_OF_RANGE) {
    return new PxehaError('PXE_ERR_STORE_BAD_REQUEST', `${what}: ${stripPrefix(message)}`, { cause: err });
  }
  if (err instanceof ClientClosedError) {
    return new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `${what}: etcd store is closed`, { cause: err });
  }
  const outcome = options.outcomeUnknown ? ' (the write may or may not have been applied)' : '';
  return new PxehaError('PXE_ERR_STORE_UNAVAILABLE', `${what}: etcd unavailable${outcome}: ${stripPrefix(message)}`, { cause: err });
}

/** etcd's answer to a simple token that expired (--auth-token-ttl); authenticating again cures it. */
export function isExpiredToken(err: unknown): boolean {
  return err instanceof EtcdInvalidAuthTokenError || messageOf(err).includes('etcdserver: invalid auth token');
}

export function isAuthError(err: unknown): boolean {
  const code = grpcCode(err);
  return (
    err instanceof EtcdAuthenticationFailedError ||
    err instanceof EtcdPermissionDeniedError ||
    err instanceof EtcdInvalidAuthTokenError ||
    err instanceof GRPCUnauthenticatedError ||
    code === GRPC_PERMISSION_DENIED ||
    code === GRPC_UNAUTHENTICATED ||
    /etcdserver: (user name is empty|authentication failed|permission denied|invalid auth token)/.test(messageOf(err))
  );
}

/**
 * Whether the error says the store could not be reached (as opposed to a refused request), so
 * it counts towards the 'disconnected' state and a read may be retried on another member.
 */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof PxehaError) return err.code === 'PXE_ERR_STORE_UNAVAILABLE';
  if (err instanceof ClientClosedError) return false;
  if (isBrokenCircuitError(err)) return true;
  // etcd3 marks Unavailable, DeadlineExceeded, Cancelled, Internal, Unknown, Aborted and
  // ResourceExhausted as recoverable ([RecoverableError]).
  return err instanceof Error && isRecoverableError(err);
}

/**
 * Whether a failed write certainly never reached etcd, so retrying it cannot apply it twice:
 * every member's circuit was open (nothing was sent), no connection could be made, or the
 * member refused it before proposing it to Raft ("no leader"). A timeout or a dropped
 * connection leaves the outcome unknown; etcd's Go client draws the same line.
 */
export function surelyNotSent(err: unknown): boolean {
  if (isBrokenCircuitError(err)) return true;
  const message = messageOf(err);
  return /No connection established|ECONNREFUSED|failed to connect|etcdserver: no leader|Failed to connect/i.test(message);
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function grpcCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** etcd3 prefixes messages with its class name and grpc-js with the status ("14 UNAVAILABLE: "). */
function stripPrefix(message: string): string {
  return message.replace(/^[A-Za-z]+Error: /, '').replace(/^\d+ [A-Z_]+: /, '');
}
