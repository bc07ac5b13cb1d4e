/**
 * How the etcd registry makes each call, for an etcd of several members: every call
 * asks for a member that has a leader (etcd's "hasleader" metadata), a member that
 * failed is skipped for 1 s (a circuit breaker per member), and a request that writes a
 * lease has a deadline per attempt of a sixth of the lease's TTL, so etcd3 retries a
 * stuck attempt on another member in time. Measured against a three-member cluster in
 * test/faults/etcd-cluster.test.ts (docs/reliability.md).
 */
import { InterceptingCall, type Interceptor } from "@grpc/grpc-js";
import { ConsecutiveBreaker, circuitBreaker, handleWhen } from "cockatiel";
import { type CallContext, isRecoverableError } from "etcd3";

/**
 * Every call asks for a member that has a leader (what clientv3.WithRequireLeader
 * sends). A member cut off from the majority, or left without quorum, then refuses a
 * request at once ("etcdserver: no leader") instead of holding it until it times out,
 * and cancels our watch after three election timeouts instead of keeping a stream open
 * that sees no change until the partition heals. The client tries another endpoint,
 * and the agent reports the registry degraded while none has a leader.
 */
export const requireLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set("hasleader", "true");
      next(metadata, listener);
    },
  });

/** How long a member that failed three calls in a row is skipped before it is tried again. */
export const MEMBER_RETRY_MS = 1000;

/**
 * The circuit breaker of one member. etcd3's default skips a member for 5 s after three
 * failures; when every member had failed (quorum lost), nothing was tried again for up
 * to 5 s after etcd was back. After 1 s a dead member is still skipped, a live one back soon.
 */
export function memberBreaker() {
  return circuitBreaker(handleWhen(isRecoverableError), {
    halfOpenAfter: MEMBER_RETRY_MS,
    breaker: new ConsecutiveBreaker(3),
  });
}

/** The shortest deadline of one attempt of a lease write. */
const LEASE_WRITE_MIN_MS = 1000;

/**
 * How long one attempt of a request may take. A request that writes a lease (the grant,
 * and the transaction that puts the key on it) gets a sixth of the lease's TTL (at least
 * 1 s, at most `timeoutMs`): a member that was cut off from the majority holds a request
 * it took just before it noticed until etcd gives up on it (7 s), and a renewal is due
 * only half a TTL before expiry; with a 6 s TTL one such request let the lease expire.
 * A short attempt fails in time, and etcd3 retries it on another member (it asks for
 * call options per attempt, not per call). `ttlOfLease` gives the TTL (ms) of a lease id
 * granted for a put not yet done; every other request gets `timeoutMs`.
 */
export function attemptMs(
  ctx: CallContext,
  timeoutMs: number,
  ttlOfLease: (id: string) => number | undefined,
): number {
  let ttlMs: number | undefined;
  if (ctx.method === "leaseGrant") ttlMs = Number(ctx.params.TTL) * 1000;
  else if (ctx.method === "txn") {
    const lease = ctx.params.success?.[0]?.request_put?.lease;
    ttlMs = lease ? ttlOfLease(String(lease)) : undefined;
  }
  if (ttlMs === undefined || !(ttlMs > 0)) return timeoutMs;
  return Math.min(timeoutMs, Math.max(LEASE_WRITE_MIN_MS, Math.floor(ttlMs / 6)));
}
