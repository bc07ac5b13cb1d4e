/**
 * An offline schema for the Kubernetes objects deploy/kubernetes/*.yaml use: strict
 * valibot objects for exactly the fields of core/v1, apps/v1 and rbac/v1 the manifest may
 * contain (an unknown or misspelt field is an error, as `kubectl --validate=strict` would
 * say), Kubernetes' name rules, and the cross-references a server would only reject at
 * run time (volumes, ConfigMap keys, ServiceAccount, selector vs. template labels).
 */
import * as v from "valibot";
import { issuesText } from "../../src/validation.ts";

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const QUALIFIED_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const CONFIGMAP_KEY = /^[-._a-zA-Z0-9]+$/;

const label = v.pipe(v.string(), v.maxLength(63), v.regex(DNS1123_LABEL, "must be a DNS-1123 label"));
const subdomain = v.pipe(
  v.string(),
  v.maxLength(253),
  v.regex(DNS1123_SUBDOMAIN, "must be a DNS-1123 subdomain"),
);
const labels = v.record(
  v.pipe(v.string(), v.regex(QUALIFIED_NAME, "label key must be a qualified name")),
  v.pipe(v.string(), v.maxLength(63), v.regex(LABEL_VALUE, "label value is not valid")),
);
const quantity = v.pipe(v.string(), v.regex(/^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/, "must be a quantity"));
const port = v.union([
  v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)),
  v.pipe(v.string(), v.regex(/^[a-z0-9-]{1,15}$/, "a named port")),
]);
const absPath = v.pipe(v.string(), v.startsWith("/", "must be an absolute path"));

const metaCluster = v.strictObject({
  name: subdomain,
  labels: v.optional(labels),
  annotations: v.optional(v.record(v.string(), v.string())),
});
const metaNamespaced = v.strictObject({
  name: subdomain,
  namespace: label,
  labels: v.optional(labels),
  annotations: v.optional(v.record(v.string(), v.string())),
});
const meta = <N extends boolean>(
  namespaced: N,
): N extends true ? typeof metaNamespaced : typeof metaCluster =>
  (namespaced ? metaNamespaced : metaCluster) as never;

const EnvVar = v.strictObject({
  name: v.pipe(v.string(), v.regex(/^[-._a-zA-Z][-._a-zA-Z0-9]*$/, "env name")),
  value: v.optional(v.string()),
  valueFrom: v.optional(
    v.union([
      v.strictObject({
        fieldRef: v.strictObject({ fieldPath: v.string(), apiVersion: v.optional(v.string()) }),
      }),
      v.strictObject({
        configMapKeyRef: v.strictObject({
          name: subdomain,
          key: v.pipe(v.string(), v.regex(CONFIGMAP_KEY)),
          optional: v.optional(v.boolean()),
        }),
      }),
      v.strictObject({
        secretKeyRef: v.strictObject({ name: subdomain, key: v.string(), optional: v.optional(v.boolean()) }),
      }),
    ]),
  ),
});

const Probe = v.strictObject({
  httpGet: v.strictObject({
    host: v.optional(v.string()),
    path: absPath,
    port,
    scheme: v.optional(v.picklist(["HTTP", "HTTPS"])),
  }),
  initialDelaySeconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  periodSeconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  timeoutSeconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  failureThreshold: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  successThreshold: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
});

const CAPABILITY = v.pipe(
  v.string(),
  v.regex(/^[A-Z_]+$/),
  v.check((s) => !s.startsWith("CAP_"), "capabilities are named without CAP_"),
);

const Container = v.strictObject({
  name: label,
  image: v.pipe(v.string(), v.minLength(1)),
  imagePullPolicy: v.optional(v.picklist(["Always", "IfNotPresent", "Never"])),
  command: v.optional(v.array(v.string())),
  args: v.optional(v.array(v.string())),
  env: v.optional(v.array(EnvVar)),
  livenessProbe: v.optional(Probe),
  readinessProbe: v.optional(Probe),
  resources: v.optional(
    v.strictObject({
      requests: v.optional(v.strictObject({ cpu: v.optional(quantity), memory: v.optional(quantity) })),
      limits: v.optional(v.strictObject({ cpu: v.optional(quantity), memory: v.optional(quantity) })),
    }),
  ),
  securityContext: v.optional(
    v.strictObject({
      privileged: v.optional(v.boolean()),
      capabilities: v.optional(
        v.strictObject({ add: v.optional(v.array(CAPABILITY)), drop: v.optional(v.array(CAPABILITY)) }),
      ),
    }),
  ),
  volumeMounts: v.optional(
    v.array(
      v.strictObject({
        name: label,
        mountPath: absPath,
        readOnly: v.optional(v.boolean()),
        mountPropagation: v.optional(v.picklist(["None", "HostToContainer", "Bidirectional"])),
        subPath: v.optional(v.string()),
      }),
    ),
  ),
});

const Volume = v.strictObject({
  name: label,
  hostPath: v.optional(
    v.strictObject({
      path: absPath,
      type: v.optional(
        v.picklist([
          "",
          "DirectoryOrCreate",
          "Directory",
          "FileOrCreate",
          "File",
          "Socket",
          "CharDevice",
          "BlockDevice",
        ]),
      ),
    }),
  ),
  configMap: v.optional(
    v.strictObject({
      name: subdomain,
      items: v.optional(v.array(v.strictObject({ key: v.string(), path: v.string() }))),
      defaultMode: v.optional(v.number()),
    }),
  ),
});

const Toleration = v.strictObject({
  key: v.optional(v.string()),
  operator: v.optional(v.picklist(["Exists", "Equal"])),
  value: v.optional(v.string()),
  effect: v.optional(v.picklist(["NoSchedule", "PreferNoSchedule", "NoExecute"])),
});

const NodeAffinity = v.strictObject({
  nodeAffinity: v.strictObject({
    requiredDuringSchedulingIgnoredDuringExecution: v.strictObject({
      nodeSelectorTerms: v.array(
        v.strictObject({
          matchExpressions: v.array(
            v.strictObject({
              key: v.string(),
              operator: v.picklist(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]),
              values: v.optional(v.array(v.string())),
            }),
          ),
        }),
      ),
    }),
  }),
});

const PodSpec = v.strictObject({
  hostNetwork: v.optional(v.boolean()),
  dnsPolicy: v.optional(v.picklist(["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"])),
  priorityClassName: v.optional(v.string()),
  serviceAccountName: v.optional(subdomain),
  terminationGracePeriodSeconds: v.optional(v.number()),
  affinity: v.optional(NodeAffinity),
  tolerations: v.optional(v.array(Toleration)),
  initContainers: v.optional(v.array(Container)),
  containers: v.pipe(v.array(Container), v.minLength(1)),
  volumes: v.optional(v.array(Volume)),
});

export const Namespace = v.strictObject({
  apiVersion: v.literal("v1"),
  kind: v.literal("Namespace"),
  metadata: meta(false),
});
export const ServiceAccount = v.strictObject({
  apiVersion: v.literal("v1"),
  kind: v.literal("ServiceAccount"),
  metadata: meta(true),
});
export const ClusterRole = v.strictObject({
  apiVersion: v.literal("rbac.authorization.k8s.io/v1"),
  kind: v.literal("ClusterRole"),
  metadata: meta(false),
  rules: v.array(
    v.strictObject({
      apiGroups: v.array(v.string()),
      resources: v.array(v.string()),
      verbs: v.array(
        v.picklist(["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]),
      ),
      resourceNames: v.optional(v.array(v.string())),
    }),
  ),
});
export const ClusterRoleBinding = v.strictObject({
  apiVersion: v.literal("rbac.authorization.k8s.io/v1"),
  kind: v.literal("ClusterRoleBinding"),
  metadata: meta(false),
  roleRef: v.strictObject({
    apiGroup: v.literal("rbac.authorization.k8s.io"),
    kind: v.picklist(["ClusterRole", "Role"]),
    name: subdomain,
  }),
  subjects: v.array(v.strictObject({ kind: v.literal("ServiceAccount"), name: subdomain, namespace: label })),
});
export const ConfigMap = v.strictObject({
  apiVersion: v.literal("v1"),
  kind: v.literal("ConfigMap"),
  metadata: meta(true),
  data: v.record(v.pipe(v.string(), v.regex(CONFIGMAP_KEY, "ConfigMap key")), v.string()),
});
export const DaemonSet = v.strictObject({
  apiVersion: v.literal("apps/v1"),
  kind: v.literal("DaemonSet"),
  metadata: meta(true),
  spec: v.strictObject({
    selector: v.strictObject({ matchLabels: labels }),
    updateStrategy: v.optional(
      v.strictObject({
        type: v.picklist(["RollingUpdate", "OnDelete"]),
        rollingUpdate: v.optional(
          v.strictObject({
            maxUnavailable: v.optional(v.union([v.number(), v.string()])),
            maxSurge: v.optional(v.union([v.number(), v.string()])),
          }),
        ),
      }),
    ),
    template: v.strictObject({
      metadata: v.strictObject({ labels, annotations: v.optional(v.record(v.string(), v.string())) }),
      spec: PodSpec,
    }),
  }),
});

const BY_KIND = { Namespace, ServiceAccount, ClusterRole, ClusterRoleBinding, ConfigMap, DaemonSet } as const;

export type K8sObject =
  | v.InferOutput<typeof Namespace>
  | v.InferOutput<typeof ServiceAccount>
  | v.InferOutput<typeof ClusterRole>
  | v.InferOutput<typeof ClusterRoleBinding>
  | v.InferOutput<typeof ConfigMap>
  | v.InferOutput<typeof DaemonSet>;

/** Validates every document; returns the problems, one line each (empty = valid). */
export function checkManifest(docs: unknown[]): string[] {
  const problems: string[] = [];
  const objs: K8sObject[] = [];
  for (const [i, doc] of docs.entries()) {
    const kind = (doc as { kind?: unknown })?.kind;
    const schema = BY_KIND[kind as keyof typeof BY_KIND];
    if (!schema) {
      problems.push(`document ${i}: kind ${JSON.stringify(kind)} is not one this manifest may contain`);
      continue;
    }
    const r = v.safeParse(schema as v.GenericSchema, doc);
    if (!r.success) problems.push(`document ${i} (${String(kind)}): ${issuesText(r.issues)}`);
    else objs.push(r.output as K8sObject);
  }
  if (problems.length) return problems;
  return problems.concat(crossReferences(objs));
}

function crossReferences(objs: K8sObject[]): string[] {
  const out: string[] = [];
  const of = <K extends K8sObject["kind"]>(k: K) =>
    objs.filter((o): o is Extract<K8sObject, { kind: K }> => o.kind === k);
  const namespaces = new Set(of("Namespace").map((n) => n.metadata.name));
  const seen = new Set<string>();
  for (const o of objs) {
    const ns = "namespace" in o.metadata ? (o.metadata as { namespace?: string }).namespace : undefined;
    const id = `${o.kind}/${ns ?? ""}/${o.metadata.name}`;
    if (seen.has(id)) out.push(`${id} appears twice`);
    seen.add(id);
    if (ns && !namespaces.has(ns))
      out.push(`${o.kind} ${o.metadata.name}: namespace ${ns} is not created by the manifest`);
  }
  const configMaps = new Map(
    of("ConfigMap").map((c) => [`${c.metadata.namespace}/${c.metadata.name}`, c.data]),
  );
  const sas = new Set(of("ServiceAccount").map((s) => `${s.metadata.namespace}/${s.metadata.name}`));
  for (const b of of("ClusterRoleBinding")) {
    if (!of("ClusterRole").some((r) => r.metadata.name === b.roleRef.name))
      out.push(`ClusterRoleBinding ${b.metadata.name}: roleRef ${b.roleRef.name} does not exist`);
    for (const s of b.subjects)
      if (!sas.has(`${s.namespace}/${s.name}`))
        out.push(`ClusterRoleBinding ${b.metadata.name}: subject ${s.namespace}/${s.name} does not exist`);
  }
  for (const ds of of("DaemonSet")) {
    const ns = ds.metadata.namespace!;
    const where = `DaemonSet ${ds.metadata.name}`;
    const tmpl = ds.spec.template;
    for (const [k, val] of Object.entries(ds.spec.selector.matchLabels))
      if (tmpl.metadata.labels[k] !== val)
        out.push(`${where}: selector ${k}=${val} does not match the pod template's labels`);
    const sa = tmpl.spec.serviceAccountName;
    if (sa && !sas.has(`${ns}/${sa}`)) out.push(`${where}: serviceAccountName ${sa} does not exist`);
    const volumes = new Map((tmpl.spec.volumes ?? []).map((vol) => [vol.name, vol]));
    if (volumes.size !== (tmpl.spec.volumes ?? []).length) out.push(`${where}: volume names are not unique`);
    for (const vol of volumes.values()) {
      if (!vol.configMap === !vol.hostPath) out.push(`${where}: volume ${vol.name} needs exactly one source`);
      if (vol.configMap) {
        const data = configMaps.get(`${ns}/${vol.configMap.name}`);
        if (!data) out.push(`${where}: volume ${vol.name}: ConfigMap ${vol.configMap.name} does not exist`);
        for (const item of vol.configMap.items ?? [])
          if (data && !(item.key in data))
            out.push(`${where}: volume ${vol.name}: ConfigMap key ${item.key} does not exist`);
      }
    }
    for (const c of [...(tmpl.spec.initContainers ?? []), ...tmpl.spec.containers]) {
      const paths = new Set<string>();
      for (const m of c.volumeMounts ?? []) {
        if (!volumes.has(m.name))
          out.push(`${where}: container ${c.name} mounts volume ${m.name}, which is not defined`);
        if (paths.has(m.mountPath)) out.push(`${where}: container ${c.name} mounts ${m.mountPath} twice`);
        paths.add(m.mountPath);
        if (m.mountPropagation === "Bidirectional" && !c.securityContext?.privileged)
          out.push(
            `${where}: container ${c.name}: Bidirectional mount propagation needs a privileged container`,
          );
      }
      for (const e of c.env ?? []) {
        const ref = e.valueFrom && "configMapKeyRef" in e.valueFrom ? e.valueFrom.configMapKeyRef : null;
        if (
          ref &&
          !ref.optional &&
          !(configMaps.get(`${ns}/${ref.name}`) && ref.key in configMaps.get(`${ns}/${ref.name}`)!)
        )
          out.push(
            `${where}: container ${c.name}: env ${e.name} refers to ConfigMap key ${ref.name}/${ref.key}, which does not exist`,
          );
        if (e.value !== undefined && e.valueFrom)
          out.push(`${where}: env ${e.name} has both value and valueFrom`);
      }
    }
  }
  return out;
}
