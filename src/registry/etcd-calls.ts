/**
 * How the etcd registry makes each call on an etcd of several members, over the JSON
 * gateway (etcd-gateway.ts) and over gRPC alike (etcd-grpc.ts): every call asks for a
 * member that has a leader (etcd's "hasleader" metadata), a member that failed is tried
 * last for 1 s, and a request that writes a lease has a deadline per attempt of a sixth
 * of the lease's TTL, so a stuck attempt is retried on another member in time. Measured
 * against a three-member cluster in test/faults/etcd-cluster.test.ts
 * (docs/reliability.md). Pure: no I/O, nothing of the gRPC stack.
 */

/**
 * The metadata every call carries: what clientv3.WithRequireLeader sends. A member cut
 * off from the majority, or left without quorum, then refuses a request at once
 * ("etcdserver: no leader") instead of holding it until it times out, and ends our
 * watch after three election timeouts instead of keeping a stream open that sees no
 * change until the partition heals. The client tries another member, and the agent
 * reports the registry degraded while none has a leader.
 */
export const REQUIRE_LEADER = { key: "hasleader", value: "true" } as const;

/** How long a member that failed is tried last (after every other) before it is tried in turn again. */
export const MEMBER_RETRY_MS = 1000;

/** The shortest deadline of one attempt of a lease write. */
const LEASE_WRITE_MIN_MS = 1000;

/** A call as both clients describe it: etcd3's method name ("leaseGrant", "txn", …) and its request. */
export interface CallShape {
  readonly method: string;
  // biome-ignore lint/suspicious/noExplicitAny: a request of any etcd call, read loosely
  readonly params?: any;
  readonly [other: string]: unknown;
}

/**
 * How long one attempt of a request may take. A request that writes a lease (the grant,
 * and the transaction that puts the key on it) gets a sixth of the lease's TTL (at least
 * 1 s, at most `timeoutMs`): a member that was cut off from the majority holds a request
 * it took just before it noticed until etcd gives up on it (7 s), and a renewal is due
 * only half a TTL before expiry; with a 6 s TTL one such request let the lease expire.
 * A short attempt fails in time, and the call is retried on another member (a deadline
 * per attempt, not per call). `ttlOfLease` gives the TTL (ms) of a lease id granted for
 * a put not yet done; every other request gets `timeoutMs`.
 */
export function attemptMs(
  call: CallShape,
  timeoutMs: number,
  ttlOfLease: (id: string) => number | undefined,
): number {
  let ttlMs: number | undefined;
  if (call.method === "leaseGrant") ttlMs = Number(call.params?.TTL) * 1000;
  else if (call.method === "txn") {
    const lease = call.params?.success?.[0]?.request_put?.lease;
    ttlMs = lease ? ttlOfLease(String(lease)) : undefined;
  }
  if (ttlMs === undefined || !(ttlMs > 0)) return timeoutMs;
  return Math.min(timeoutMs, Math.max(LEASE_WRITE_MIN_MS, Math.floor(ttlMs / 6)));
}

/**
 * gRPC status codes that say "this member, now" rather than "this request": etcd3's
 * recoverable errors (cancelled, unknown, deadline exceeded, resource exhausted,
 * aborted, internal, unavailable — "etcdserver: no leader" is unavailable). A call
 * that got one is tried on the next member.
 */
const MEMBER_FAULTS = new Set([1, 2, 4, 8, 10, 13, 14]);

/** Is a gRPC status code (null: no answer at all) the member's fault rather than the request's? */
export function isMemberFault(code: number | null): boolean {
  return code === null || MEMBER_FAULTS.has(code);
}

/**
 * The order in which the gateway client tries the members: from the one that answered
 * last, round the list, with those that failed in the last `retryMs` at the end (still
 * tried: when every member failed, as while quorum is lost, the first one back answers
 * at once, not a second later).
 */
export class MemberOrder {
  #current = 0;
  /** Per member: until when it is tried last (0: not). */
  readonly #failedUntil: number[];

  constructor(
    readonly size: number,
    readonly retryMs: number = MEMBER_RETRY_MS,
  ) {
    this.#failedUntil = new Array<number>(size).fill(0);
  }

  /** The member that answered last. */
  get current(): number {
    return this.#current;
  }

  /** The members to try at `now`, in order. */
  order(now: number): number[] {
    const fresh: number[] = [];
    const failed: number[] = [];
    for (let i = 0; i < this.size; i++) {
      const m = (this.#current + i) % this.size;
      (this.#failedUntil[m]! > now ? failed : fresh).push(m);
    }
    return [...fresh, ...failed];
  }

  /** Member `m` answered: it is tried first from now on. */
  ok(m: number): void {
    this.#current = m;
    this.#failedUntil[m] = 0;
  }

  /** Member `m` failed at `now`: tried last for `retryMs`, and the next one becomes the first. */
  failed(m: number, now: number): void {
    this.#failedUntil[m] = now + this.retryMs;
    if (m === this.#current) this.#current = (m + 1) % this.size;
  }
}
