/**
 * Doctor's checks of the node's standing in the cluster: the agent answers and is
 * ready, the registry is readable with valid records, our lease is held and not about to
 * expire, subnet.env matches it, and our CNI config is the one the runtime picks. Pure.
 */
import { cidrEquals, firstHost, formatCidr, formatIp4 } from "../../config/cidr.ts";
import { cidr6Equals, firstHost6, formatCidr6, formatIp6 } from "../../config/cidr6.ts";
import type { Facts } from "../facts.ts";
import {
  type Check,
  cannot,
  derive,
  firstFew,
  formatDuration,
  LEASE_EXPIRY_MARGIN_MS,
  leaseName,
  OUR_CNI_TYPES,
  ok,
  RESTART,
} from "./common.ts";

/** Is an agent answering on --http, healthy and ready? */
export function checkAgent(f: Facts): Check {
  const id = "agent";
  const why =
    "the agent keeps the lease renewed and the datapath in step with the registry; without it the node drifts";
  if (!f.agent.ok)
    return cannot(
      id,
      `no agent answers at http://${f.settings.http} (${f.agent.error}); doctor judged from flags, the registry and the kernel`,
      why,
      "start it (systemctl start tartan), or point doctor at it with --http=HOST:PORT",
    );
  const s = f.agent.value.status;
  if (!s.health.ok)
    return {
      id,
      status: "problem",
      finding: `agent ${s.node} at ${f.settings.http} is unhealthy: ${s.health.reasons.join("; ")}`,
      why,
      fix: "read the agent's log (journalctl -u tartan); the checks below name the broken part",
      fixable: false,
    };
  if (!s.ready.ok)
    return cannot(
      id,
      `agent ${s.node} at ${f.settings.http} is not ready: ${s.ready.reasons.join("; ")}`,
      why,
      "wait for it, or read its log (journalctl -u tartan)",
    );
  return ok(
    id,
    `agent ${s.node} (tartan ${s.version}, backend ${s.backend ?? "-"}) is healthy and ready`,
    why,
  );
}

/** Can we read the registry, and are all records valid? */
export function checkRegistry(f: Facts): Check {
  const id = "registry";
  const why =
    "leases and the network config live there; an unreachable registry means no renewals and no new peers";
  if (!f.registry.ok)
    return {
      id,
      status: "problem",
      finding: `registry unreachable: ${f.registry.error}`,
      why,
      fix: f.kube
        ? "check --kubeconfig-file / --kube-api-url (or the pod's service account) and --net-config-path; kubectl get nodes with the same credentials shows what the agent sees"
        : "check --registry=sqlite:PATH or --etcd-endpoints and the --etcd-* TLS flags; `tartan leases` with the same flags shows what the agent sees",
      fixable: false,
    };
  const r = f.registry.value;
  if (!f.config.ok)
    return {
      id,
      status: "problem",
      finding: `${r.description}: no usable network config (${f.config.error})`,
      why: "without a network config no node can lease a subnet",
      fix: f.kube
        ? "fix the net-conf.json at --net-config-path (the ConfigMap's net-conf.json)"
        : 'tartan config set net-conf.json (flannel\'s format, e.g. {"Network": "10.244.0.0/16"})',
      fixable: false,
    };
  if (r.invalid.length > 0) {
    const items = r.invalid.map((i) => `${i.key}: ${i.reason}`);
    return {
      id,
      status: "warning",
      finding: `${r.description}: ${r.invalid.length} invalid lease record(s): ${firstFew(items, 2)}`,
      why: "invalid records are skipped by every node: that subnet is unreachable",
      fix: "fix or delete those records (tartan leases lists them); the node that owns one re-acquires",
      fixable: false,
      details: items,
    };
  }
  return ok(id, `${r.description} answers: ${r.leases.length} valid lease(s)`, why);
}

/** Our lease: present, matching what the agent holds, not about to expire. */
export function checkLease(f: Facts): Check {
  const id = "lease";
  const why =
    "the lease is this node's claim on its pod subnet; lose it and another node may take the subnet";
  const who = f.underlay.ok ? formatIp4(f.underlay.value.publicIp) : "this node";
  if (!f.registry.ok)
    return cannot(
      id,
      `cannot check the lease of ${who}: the registry is unreachable`,
      why,
      "fix the registry first (see the registry check)",
    );
  const own = f.ownLease;
  if (!own && f.kube?.ok)
    return {
      id,
      status: "problem",
      finding: `Node ${f.kube.value.nodeName} is not a lease in ${f.registry.value.description}: see the kube checks`,
      why,
      fix: "start the agent (it publishes the Node's annotations); the kube-podcidr and kube-annotations checks say what is missing",
      fixable: false,
    };
  if (!own)
    return {
      id,
      status: "problem",
      finding: f.underlay.ok
        ? `no lease in ${f.registry.value.description} has PublicIP ${who}`
        : `cannot find this node's lease in ${f.registry.value.description}: its PublicIP is unknown (see the underlay check)`,
      why,
      fix: "start the agent (it acquires one); if it runs, check --iface/--public-ip match what it publishes",
      fixable: false,
    };
  const pub = formatIp4(own.attrs.publicIp);
  const agentLease = f.agent.ok ? f.agent.value.status.lease : null;
  if (agentLease && agentLease.subnet !== formatCidr(own.subnet))
    return {
      id,
      status: "problem",
      finding: `the agent holds ${agentLease.subnet} but the registry's lease for ${pub} is ${leaseName(own)}`,
      why,
      fix: RESTART,
      fixable: false,
    };
  if (own.expiresAt === null)
    return ok(
      id,
      f.kube?.ok
        ? `lease ${leaseName(own)} for ${pub} is Node ${f.kube.value.nodeName}'s podCIDR (never expires)`
        : `lease ${leaseName(own)} for ${pub} is a reservation (never expires)`,
      why,
    );
  const left = own.expiresAt - f.now;
  if (left <= 0)
    return {
      id,
      status: "problem",
      finding: `lease ${leaseName(own)} for ${pub} expired ${formatDuration(-left)} ago`,
      why,
      fix: "start the agent; it renews or re-acquires the lease",
      fixable: false,
    };
  if (left < LEASE_EXPIRY_MARGIN_MS)
    return {
      id,
      status: "problem",
      finding: `lease ${leaseName(own)} for ${pub} expires in ${formatDuration(left)} (${new Date(own.expiresAt).toISOString()})`,
      why,
      fix: "check the agent is running and can write to the registry (renewals are in its log)",
      fixable: false,
    };
  return ok(id, `lease ${leaseName(own)} for ${pub}, expires in ${formatDuration(left)}`, why);
}

/** subnet.env: present, parseable, matching the lease, the MTU and --ip-masq. */
export function checkSubnetEnv(f: Facts): Check {
  const id = "subnet-env";
  const path = f.settings.subnetFile;
  const why = `the CNI plugin and Docker read ${path} to address pods; missing or wrong, pods fail to start or get another node's subnet`;
  const d = derive(f);
  const canFix = d.own !== null && d.network !== null && d.podMtu !== null;
  const fixText = canFix
    ? `tartan doctor --fix rewrites it from lease ${leaseName(d.own!)}`
    : "restart the agent; it rewrites the file from its lease";
  const bad = (finding: string): Check => ({
    id,
    status: "problem",
    finding,
    why,
    fix: fixText,
    fixable: canFix,
  });
  const e = f.subnetEnv;
  if (e.kind === "missing") return bad(`${path} is missing`);
  if (e.kind === "invalid") return bad(`${path} does not parse: ${e.reason}`);
  const env = e.env;
  if (d.network && !cidrEquals(env.network, d.network))
    return bad(
      `${path} says FLANNEL_NETWORK=${formatCidr(env.network)}, the network config says ${formatCidr(d.network)}`,
    );
  if (d.own && !cidrEquals(env.subnet, d.own.subnet))
    return bad(
      `${path} says FLANNEL_SUBNET=${formatIp4(firstHost(env.subnet))}/${env.subnet.len}, the lease is ${leaseName(d.own)}`,
    );
  const c6 = f.config.ok ? (f.config.value.ipv6 ?? null) : null;
  const env6 = env.subnet6 ?? null;
  if (c6 && (!env.network6 || !cidr6Equals(env.network6, c6.network)))
    return bad(
      `${path} says FLANNEL_IPV6_NETWORK=${env.network6 ? formatCidr6(env.network6) : "(none)"}, the network config says ${formatCidr6(c6.network)}`,
    );
  const own6 = d.own?.subnet6 ?? null;
  if (c6 && own6 && (!env6 || !cidr6Equals(env6, own6)))
    return bad(
      `${path} says FLANNEL_IPV6_SUBNET=${env6 ? `${formatIp6(firstHost6(env6))}/${env6.len}` : "(none)"}, the lease's IPv6 subnet is ${formatCidr6(own6)}`,
    );
  if (d.podMtu !== null && env.mtu !== d.podMtu)
    return bad(`${path} says FLANNEL_MTU=${env.mtu}, the overlay needs ${d.podMtu}`);
  if (env.ipMasq !== f.settings.ipMasq)
    return {
      id,
      status: "warning",
      finding: `${path} says FLANNEL_IPMASQ=${env.ipMasq} but --ip-masq is ${f.settings.ipMasq}`,
      why: "the CNI bridge masquerades when FLANNEL_IPMASQ is false: traffic gets masqueraded twice or not at all",
      fix: fixText,
      fixable: canFix,
    };
  const v6text = env6 ? ` FLANNEL_IPV6_SUBNET=${formatIp6(firstHost6(env6))}/${env6.len}` : "";
  return ok(
    id,
    `${path}: FLANNEL_SUBNET=${formatIp4(firstHost(env.subnet))}/${env.subnet.len}${v6text} FLANNEL_MTU=${env.mtu} FLANNEL_IPMASQ=${env.ipMasq}`,
    why,
  );
}

/** Files in the CNI config directory that sort before ours win. */
export function checkCniConfig(f: Facts): Check {
  const id = "cni-config";
  const c = f.cni;
  const why =
    "the container runtime uses the first CNI config in lexical order; a leftover file before ours (another CNI, an old flannel) gives pods another network";
  if (!c.exists) return ok(id, `${c.dir} does not exist (no CNI runtime configured here)`, why);
  if (c.files.length === 0)
    return cannot(
      id,
      `${c.dir} has no CNI config: pods get no network`,
      why,
      "install deploy/cni/10-tartan.conflist there",
    );
  const ours = c.files.findIndex((x) => x.invalid === null && x.types.some((t) => OUR_CNI_TYPES.includes(t)));
  if (ours < 0)
    return cannot(
      id,
      `no config in ${c.dir} uses the tartan plugin; ${c.files[0]!.name} (${c.files[0]!.types.join(",") || "invalid"}) wins`,
      why,
      "install deploy/cni/10-tartan.conflist there",
    );
  const before = c.files.slice(0, ours);
  if (before.length === 0) return ok(id, `${c.dir}/${c.files[ours]!.name} is the first config: it wins`, why);
  const items = before.map(
    (x) => `${c.dir}/${x.name} (${x.invalid ? `invalid: ${x.invalid}` : `plugins ${x.types.join(",")}`})`,
  );
  return {
    id,
    status: "problem",
    finding: `${firstFew(items, 2)} sorts before ${c.files[ours]!.name} and wins`,
    why,
    fix: `move it away: mv ${c.dir}/${before[0]!.name} /root/ (then recreate the pods it networked)`,
    fixable: false,
    details: items,
  };
}
