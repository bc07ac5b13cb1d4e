/**
 * Node objects for the stand-in API server: a small one (what a test needs to say) or a
 * realistic one, shaped like what a kubeadm cluster's kubelet and controllers leave on a
 * Node (labels, kubelet annotations, managedFields, conditions, addresses, nodeInfo, a
 * page of images: about 6 KB of JSON), for memory and CPU figures that mean something.
 */

export interface NodeInput {
  readonly name: string;
  /** Sets spec.podCIDR and spec.podCIDRs; absent = not assigned yet. */
  readonly podCIDR?: string;
  /** Dual stack: sets spec.podCIDRs to these (and spec.podCIDR to the first), instead of podCIDR. */
  readonly podCIDRs?: readonly string[];
  readonly internalIp?: string;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly labels?: Readonly<Record<string, string>>;
  /** Add what a real kubelet and controllers write (larger objects). */
  readonly realistic?: boolean;
}

/** flannel's four annotations exactly as a flanneld vxlan node writes them (prefix flannel.alpha.coreos.com). */
export function flanneldVxlanAnnotations(publicIp: string, vtepMac: string, vni = 1): Record<string, string> {
  return {
    "flannel.alpha.coreos.com/backend-data": `{"VNI":${vni},"VtepMAC":"${vtepMac}"}`,
    "flannel.alpha.coreos.com/backend-type": "vxlan",
    "flannel.alpha.coreos.com/kube-subnet-manager": "true",
    "flannel.alpha.coreos.com/public-ip": publicIp,
  };
}

/**
 * The six annotations a dual-stack flanneld vxlan node writes (flannel.1's and
 * flannel-v6.1's MACs), as flanneld writes them.
 */
export function flanneldDualVxlanAnnotations(
  publicIp: string,
  vtepMac: string,
  publicIpv6: string,
  vtepMac6: string,
  vni = 1,
): Record<string, string> {
  return {
    ...flanneldVxlanAnnotations(publicIp, vtepMac, vni),
    "flannel.alpha.coreos.com/backend-v6-data": `{"VNI":${vni},"VtepMAC":"${vtepMac6}"}`,
    "flannel.alpha.coreos.com/public-ipv6": publicIpv6,
  };
}

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

/** A MAC derived from a node index: stable, locally administered, unicast. */
export function macFor(i: number): string {
  return `0e:7a:${hex((i >> 24) & 255, 2)}:${hex((i >> 16) & 255, 2)}:${hex((i >> 8) & 255, 2)}:${hex(i & 255, 2)}`;
}

function managedFields(name: string, t: string): unknown[] {
  const f = (manager: string, op: string, sub: string | undefined, fields: unknown) => ({
    manager,
    operation: op,
    apiVersion: "v1",
    time: t,
    fieldsType: "FieldsV1",
    fieldsV1: fields,
    ...(sub ? { subresource: sub } : {}),
  });
  return [
    f("kubeadm", "Update", undefined, {
      "f:metadata": { "f:annotations": { "f:kubeadm.alpha.kubernetes.io/cri-socket": {} } },
    }),
    f("kube-controller-manager", "Update", undefined, {
      "f:metadata": { "f:annotations": { "f:node.alpha.kubernetes.io/ttl": {} } },
      "f:spec": { "f:podCIDR": {}, "f:podCIDRs": { ".": {}, [`v:"${name}"`]: {} } },
    }),
    f("kubelet", "Update", "status", {
      "f:status": {
        "f:allocatable": { "f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}, "f:pods": {} },
        "f:capacity": { "f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}, "f:pods": {} },
        "f:conditions": {
          'k:{"type":"DiskPressure"}': {
            "f:lastHeartbeatTime": {},
            "f:lastTransitionTime": {},
            "f:message": {},
          },
          'k:{"type":"MemoryPressure"}': {
            "f:lastHeartbeatTime": {},
            "f:lastTransitionTime": {},
            "f:message": {},
          },
          'k:{"type":"PIDPressure"}': {
            "f:lastHeartbeatTime": {},
            "f:lastTransitionTime": {},
            "f:message": {},
          },
          'k:{"type":"Ready"}': { "f:lastHeartbeatTime": {}, "f:lastTransitionTime": {}, "f:message": {} },
        },
        "f:images": {},
        "f:nodeInfo": { "f:bootID": {}, "f:kernelVersion": {}, "f:osImage": {} },
      },
    }),
    f("flanneld", "Update", "status", {
      "f:metadata": {
        "f:annotations": {
          "f:flannel.alpha.coreos.com/backend-data": {},
          "f:flannel.alpha.coreos.com/backend-type": {},
          "f:flannel.alpha.coreos.com/kube-subnet-manager": {},
          "f:flannel.alpha.coreos.com/public-ip": {},
        },
      },
      "f:status": { "f:conditions": { 'k:{"type":"NetworkUnavailable"}': { ".": {}, "f:reason": {} } } },
    }),
  ];
}

const IMAGES = [
  ["registry.k8s.io/etcd", "3.5.16-0", 56909194],
  ["registry.k8s.io/kube-apiserver", "v1.32.0", 28673652],
  ["registry.k8s.io/kube-controller-manager", "v1.32.0", 26258470],
  ["registry.k8s.io/kube-proxy", "v1.32.0", 30906462],
  ["registry.k8s.io/kube-scheduler", "v1.32.0", 20656471],
  ["registry.k8s.io/coredns/coredns", "v1.11.3", 18562039],
  ["ghcr.io/flannel-io/flannel", "v0.26.1", 32018304],
  ["ghcr.io/flannel-io/flannel-cni-plugin", "v1.6.0-flannel1", 4856838],
  ["docker.io/library/nginx", "1.27.3", 72955450],
  ["registry.k8s.io/pause", "3.10", 320368],
] as const;

/** A Node object as the API server would hold it before it assigns uid and resourceVersion. */
export function makeNode(n: NodeInput): Record<string, unknown> {
  const t = "2026-01-01T00:00:00Z";
  const labels: Record<string, string> = {
    "kubernetes.io/hostname": n.name,
    "kubernetes.io/os": "linux",
    ...n.labels,
  };
  const annotations: Record<string, string> = { ...n.annotations };
  const spec: Record<string, unknown> = {};
  const podCIDRs = n.podCIDRs ?? (n.podCIDR ? [n.podCIDR] : []);
  if (podCIDRs.length > 0) {
    spec.podCIDR = podCIDRs[0];
    spec.podCIDRs = [...podCIDRs];
  }
  const status: Record<string, unknown> = {
    conditions: [
      {
        type: "Ready",
        status: "True",
        lastHeartbeatTime: t,
        lastTransitionTime: t,
        reason: "KubeletReady",
        message: "kubelet is posting ready status",
      },
    ],
    addresses: [
      ...(n.internalIp ? [{ type: "InternalIP", address: n.internalIp }] : []),
      { type: "Hostname", address: n.name },
    ],
  };
  const node: Record<string, unknown> = {
    kind: "Node",
    apiVersion: "v1",
    metadata: { name: n.name, labels, annotations },
    spec,
    status,
  };
  if (!n.realistic) return node;
  Object.assign(labels, {
    "beta.kubernetes.io/arch": "amd64",
    "beta.kubernetes.io/os": "linux",
    "kubernetes.io/arch": "amd64",
    "node.kubernetes.io/exclude-from-external-load-balancers": "",
  });
  Object.assign(annotations, {
    "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
    "node.alpha.kubernetes.io/ttl": "0",
    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
  });
  (node.metadata as Record<string, unknown>).managedFields = managedFields(n.podCIDR ?? n.name, t);
  const cond = (type: string, reason: string, message: string) => ({
    type,
    status: "False",
    lastHeartbeatTime: t,
    lastTransitionTime: t,
    reason,
    message,
  });
  status.conditions = [
    cond("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    cond("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    cond("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ...(status.conditions as unknown[]),
  ];
  const res = {
    cpu: "8",
    "ephemeral-storage": "101430960Ki",
    "hugepages-2Mi": "0",
    memory: "32827876Ki",
    pods: "110",
  };
  Object.assign(status, {
    capacity: res,
    allocatable: { ...res, "ephemeral-storage": "93478772582", memory: "32725476Ki" },
    daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
    nodeInfo: {
      machineID: "5f4dcc3b5aa765d61d8327deb882cf99",
      systemUUID: "4c4c4544-0042-3510-8052-b4c04f4e3732",
      bootID: "a3c9f1d2-7b6e-4f0a-9d8c-1e2f3a4b5c6d",
      kernelVersion: "6.1.0-28-amd64",
      osImage: "Debian GNU/Linux 12 (bookworm)",
      containerRuntimeVersion: "containerd://1.7.24",
      kubeletVersion: "v1.32.0",
      kubeProxyVersion: "v1.32.0",
      operatingSystem: "linux",
      architecture: "amd64",
    },
    images: IMAGES.map(([name, tag, size], i) => ({
      names: [`${name}@sha256:${hex(i * 7919 + 1, 8).repeat(8)}`, `${name}:${tag}`],
      sizeBytes: size,
    })),
  });
  return node;
}
