/**
 * Which Node is ours, as flanneld finds it: NODE_NAME, else the pod's own
 * `spec.nodeName` looked up through POD_NAME and POD_NAMESPACE (the downward API).
 */
import { KubeApiError, type KubeClient } from "./client.ts";

export async function resolveNodeName(
  env: Readonly<Record<string, string | undefined>>,
  client: Pick<KubeClient, "getPod">,
): Promise<string> {
  if (env.NODE_NAME) return env.NODE_NAME;
  const pod = env.POD_NAME;
  const ns = env.POD_NAMESPACE;
  if (!pod || !ns)
    throw new KubeApiError(
      "cannot tell which Node is ours: set NODE_NAME, or POD_NAME and POD_NAMESPACE (the downward API)",
      0,
      "NoNodeName",
    );
  let obj: { spec?: { nodeName?: unknown } };
  try {
    obj = (await client.getPod(ns, pod)) as typeof obj;
  } catch (e) {
    throw new KubeApiError(
      `cannot read pod ${ns}/${pod} to find our Node: ${(e as Error).message}`,
      e instanceof KubeApiError ? e.status : 0,
      e instanceof KubeApiError ? e.reason : "",
      { cause: e },
    );
  }
  const name = obj.spec?.nodeName;
  if (typeof name !== "string" || name === "")
    throw new KubeApiError(`pod ${ns}/${pod} has no spec.nodeName (is it scheduled?)`, 0, "NoNodeName");
  return name;
}
