/**
 * The Node's `NetworkUnavailable` condition, set to False once the network is up, as
 * flanneld does (reason `FlannelIsUp`, flannel's message, so tools that look for it find
 * it), sent as a strategic-merge patch on `nodes/NAME/status` (conditions merge by
 * `type`). Pure: the patch only when the Node's current condition differs.
 */

export const NETWORK_UNAVAILABLE = "NetworkUnavailable";
export const NETWORK_UP_REASON = "FlannelIsUp";
export const NETWORK_UP_MESSAGE = "Flannel is running on this node";

export interface NodeConditionLike {
  readonly type?: unknown;
  readonly status?: unknown;
  readonly reason?: unknown;
  readonly message?: unknown;
  readonly lastTransitionTime?: unknown;
}

/** The Node's NetworkUnavailable condition, or null. */
export function networkUnavailableCondition(
  status: { conditions?: unknown } | undefined,
): NodeConditionLike | null {
  const list = status?.conditions;
  if (!Array.isArray(list)) return null;
  for (const c of list)
    if (typeof c === "object" && c !== null && (c as NodeConditionLike).type === NETWORK_UNAVAILABLE)
      return c as NodeConditionLike;
  return null;
}

/** metav1.Time as Go marshals it: RFC 3339, UTC, whole seconds. */
export function kubeTime(d: Date): string {
  return `${d.toISOString().slice(0, 19)}Z`;
}

/**
 * The status patch that sets NetworkUnavailable=False (FlannelIsUp), or null when the
 * Node already says exactly that. The transition time stays when the status was already
 * False (only the reason or message change), as a condition's transition time means.
 */
export function networkUpPatch(status: { conditions?: unknown } | undefined, now: Date): string | null {
  const cur = networkUnavailableCondition(status);
  if (cur && cur.status === "False" && cur.reason === NETWORK_UP_REASON && cur.message === NETWORK_UP_MESSAGE)
    return null;
  const t = kubeTime(now);
  const transition =
    cur?.status === "False" && typeof cur.lastTransitionTime === "string" ? cur.lastTransitionTime : t;
  // Go's field order for NodeCondition
  const condition = {
    type: NETWORK_UNAVAILABLE,
    status: "False",
    lastHeartbeatTime: t,
    lastTransitionTime: transition,
    reason: NETWORK_UP_REASON,
    message: NETWORK_UP_MESSAGE,
  };
  return JSON.stringify({ status: { conditions: [condition] } });
}
