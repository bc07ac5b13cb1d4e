/**
 * etcd-calls.ts's rules in the gRPC client's terms (etcd3 and grpc-js): an interceptor
 * that sends the "hasleader" metadata, and the circuit breaker of one member. Loaded
 * only with the gRPC transport (etcd-grpc.ts imports it when it is needed), so the
 * gateway path never loads grpc-js, cockatiel or etcd3.
 */
import { InterceptingCall, type Interceptor } from "@grpc/grpc-js";
import { ConsecutiveBreaker, circuitBreaker, handleWhen } from "cockatiel";
import { isRecoverableError } from "etcd3";
import { MEMBER_RETRY_MS, REQUIRE_LEADER } from "./etcd-calls.ts";

/** Every call asks for a member that has a leader (see REQUIRE_LEADER). */
export const requireLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set(REQUIRE_LEADER.key, REQUIRE_LEADER.value);
      next(metadata, listener);
    },
  });

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
