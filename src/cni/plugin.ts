/**
 * `tartan cni` — the CNI plugin (ADD, DEL, CHECK, VERSION; spec 0.3.0-1.0.0), run by a
 * container runtime with CNI_* variables and the network config on stdin. Like flannel's
 * plugin it reads subnet.env and delegates to `bridge` + `host-local`, keeping the
 * delegated config per container so DEL works after a restart. Unlike it, it repairs a
 * bridge left with an address from an older subnet, and reports each pod to an
 * endpoint sink (the eBPF datapath's endpoint map). Every failure is one spec error
 * object on stdout and exit code 1.
 */

import { type EndpointSink, type EndpointSinkFactory, noopEndpointSink } from "../backend/endpoint.ts";
import { formatCidr } from "../config/cidr.ts";
import { readSubnetEnv, type SubnetEnv } from "../config/subnet-env.ts";
import { createLogger, errorText, type Logger } from "../log.ts";
import { type CniEnv, type NetConf, parseCniEnv, parseNetConf } from "./conf.ts";
import {
  bridgeIsGateway,
  bridgeOf,
  buildDelegateConf,
  gatewayOf,
  staleBridgeAddrs,
} from "./delegate-conf.ts";
import { CNI_ERR, CniError } from "./errors.ts";
import { type HostNet, iproute2 } from "./host.ts";
import { invokeDelegate } from "./invoke.ts";
import { convertResult, parseResult, podEndpoint, routesWithGateways } from "./result.ts";
import { ContainerState } from "./state.ts";
import { CURRENT_VERSION, isSupported, requireCheckSupport, versionInfo } from "./version.ts";

/** libcni's code for an unexpected failure inside a plugin. */
const ERR_INTERNAL = 999;

export interface CniOptions {
  env: Record<string, string | undefined>;
  stdin: string;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  log?: Logger;
  /** Where pods are reported after ADD and withdrawn before DEL; a no-op by default. */
  endpointSink?: EndpointSink | EndpointSinkFactory;
  /** The node's network as the plugin sees it (tests replace it). */
  host?: HostNet;
}

interface Ctx {
  readonly env: CniEnv;
  readonly conf: NetConf;
  readonly opts: CniOptions;
  readonly log: Logger;
  readonly host: HostNet;
  readonly state: ContainerState;
  sink(): EndpointSink;
}

/** The cniVersion error objects carry: the config's, when stdin names a supported one. */
function stdinVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === "string" && isSupported(v) ? v : CURRENT_VERSION;
  } catch {
    return CURRENT_VERSION;
  }
}

export async function runCni(opts: CniOptions): Promise<number> {
  const log = opts.log ?? createLogger({ write: (line) => opts.stderr(`${line}\n`) }, { component: "cni" });
  const version = stdinVersion(opts.stdin);
  let command = opts.env.CNI_COMMAND ?? "";
  const cid = opts.env.CNI_CONTAINERID ?? "";
  try {
    const env = parseCniEnv(opts.env);
    command = env.command;
    if (env.command === "VERSION") {
      let cfgVersion: unknown;
      try {
        cfgVersion = (JSON.parse(opts.stdin || "{}") as { cniVersion?: unknown }).cniVersion;
      } catch {}
      opts.stdout(`${JSON.stringify(versionInfo(cfgVersion))}\n`);
      return 0;
    }
    const conf = parseNetConf(opts.stdin);
    let sink: EndpointSink | null = null;
    const cmdLog = log.with({ cmd: env.command, container: env.containerId });
    const ctx: Ctx = {
      env,
      conf,
      opts,
      log: cmdLog,
      host: opts.host ?? iproute2,
      state: new ContainerState(conf.dataDir, env.containerId),
      sink: () => {
        sink ??= resolveSink(opts.endpointSink, conf, cmdLog);
        return sink;
      },
    };
    if (env.command === "ADD") await cmdAdd(ctx);
    else if (env.command === "DEL") await cmdDel(ctx);
    else await cmdCheck(ctx);
    return 0;
  } catch (e) {
    const err =
      e instanceof CniError ? e : new CniError(ERR_INTERNAL, `internal error: ${errorText(e)}`, undefined);
    opts.stdout(`${JSON.stringify(err.toJson(version))}\n`);
    log.error("CNI command failed", {
      cmd: command,
      container: cid,
      code: err.code,
      error: err.message,
      ...(err.details ? { details: err.details } : {}),
    });
    return 1;
  }
}

function resolveSink(s: CniOptions["endpointSink"], conf: NetConf, log: Logger): EndpointSink {
  if (!s) return noopEndpointSink;
  if (typeof s !== "function") return s;
  try {
    return s({ conf, log });
  } catch (e) {
    log.warn("endpoint sink unavailable; pods are reached through the bridge", { error: errorText(e) });
    return noopEndpointSink;
  }
}

function loadSubnetEnv(conf: NetConf): SubnetEnv {
  const r = readSubnetEnv(conf.subnetFile);
  if (r.kind === "missing")
    throw new CniError(
      CNI_ERR.TRY_AGAIN_LATER,
      `${conf.subnetFile} does not exist yet: the tartan agent writes it once it holds a lease (is it running?)`,
    );
  if (r.kind === "invalid")
    throw new CniError(CNI_ERR.SUBNET_ENV_INVALID, `${conf.subnetFile} is invalid: ${r.reason}`);
  return r.env;
}

/**
 * Removes IPv4 addresses from the bridge that do not belong to the current subnet (a
 * subnet change leaves the old gateway behind, and the bridge plugin then refuses every
 * pod with "already has an IP address different from …").
 */
async function repairBridge(ctx: Ctx, delegate: Record<string, unknown>, env: SubnetEnv): Promise<void> {
  const bridge = bridgeOf(delegate);
  if (!bridge || !bridgeIsGateway(delegate)) return;
  let have: Awaited<ReturnType<HostNet["bridgeAddrs"]>>;
  try {
    have = await ctx.host.bridgeAddrs(bridge);
  } catch (e) {
    ctx.log.warn("cannot read the bridge's addresses; leaving them to the bridge plugin", {
      bridge,
      error: errorText(e),
    });
    return;
  }
  if (!have) return;
  const gateway = gatewayOf(env.subnet);
  for (const stale of staleBridgeAddrs(have, gateway)) {
    try {
      await ctx.host.delAddr(bridge, stale);
      ctx.log.warn("removed a stale address from the bridge: the node's subnet changed", {
        bridge,
        stale: `${stale.ip}/${stale.len}`,
        gateway: `${gateway.ip}/${gateway.len}`,
        subnet: formatCidr(env.subnet),
      });
    } catch (e) {
      // a concurrent ADD may have removed it first
      const now = await ctx.host.bridgeAddrs(bridge).catch(() => null);
      if (now?.some((a) => a.ip === stale.ip && a.len === stale.len))
        ctx.log.error("cannot remove a stale address from the bridge", {
          bridge,
          stale: `${stale.ip}/${stale.len}`,
          error: errorText(e),
        });
    }
  }
}

async function cmdAdd(ctx: Ctx): Promise<void> {
  const { env, conf, state } = ctx;
  const senv = loadSubnetEnv(conf);
  const delegate = buildDelegateConf(conf, senv);
  // saved first: if ADD fails half-way, the runtime's DEL still finds what to undo
  state.saveConf(delegate);
  await repairBridge(ctx, delegate, senv);
  const raw = await invokeDelegate({
    command: "ADD",
    type: delegate.type,
    conf: delegate,
    env: ctx.opts.env,
    path: env.path,
  });
  const result = convertResult(parseResult(raw, `${delegate.type} ADD result`), conf.cniVersion);
  await reportEndpoint(ctx, result, bridgeOf(delegate));
  ctx.opts.stdout(`${JSON.stringify(result)}\n`);
}

async function reportEndpoint(
  ctx: Ctx,
  result: ReturnType<typeof parseResult>,
  bridge: string | null,
): Promise<void> {
  const { env } = ctx;
  const pod = podEndpoint(result, env.ifname, bridge);
  if (!pod) {
    ctx.log.info("pod added; no IPv4 veth endpoint in the delegate's result to report");
    return;
  }
  try {
    const ifindex = await ctx.host.ifindex(pod.hostVeth);
    if (ifindex === null) throw new Error(`host-side veth ${pod.hostVeth} not found`);
    const ep = {
      ip: pod.ip,
      ...(pod.ip6 ? { ip6: pod.ip6 } : {}),
      ifindex,
      hostVeth: pod.hostVeth,
      mac: pod.mac,
      ...(pod.hostMac ? { hostMac: pod.hostMac } : {}),
      containerId: env.containerId,
      ifname: env.ifname,
      netns: env.netns,
      ...(bridge ? { bridge } : {}),
    };
    ctx.state.saveEndpoint(ep);
    await ctx.sink().add(ep);
    ctx.log.info("pod added", {
      ip: pod.ip,
      ...(pod.ip6 ? { ip6: pod.ip6 } : {}),
      veth: pod.hostVeth,
      ifindex,
    });
  } catch (e) {
    ctx.log.warn("pod added, but the datapath was not told about it; it is reached through the bridge", {
      ip: pod.ip,
      error: errorText(e),
    });
  }
}

async function cmdDel(ctx: Ctx): Promise<void> {
  const { env, conf, state } = ctx;
  const ep = state.loadEndpoint();
  if (ep) {
    try {
      await ctx.sink().remove(ep.ip, ep.ip6);
    } catch (e) {
      ctx.log.warn("could not withdraw the pod from the datapath", { ip: ep.ip, error: errorText(e) });
    }
  }
  const stored = state.loadConf();
  if (!stored) {
    await delWithoutState(ctx);
    state.remove();
    return;
  }
  const type = typeof stored.type === "string" ? stored.type : "bridge";
  await invokeDelegate({ command: "DEL", type, conf: stored, env: ctx.opts.env, path: env.path });
  state.remove();
  ctx.log.info("pod deleted", { ...(ep ? { ip: ep.ip } : {}), network: conf.name });
}

/**
 * DEL for a container with no stored config (never added, or its state was lost): the
 * spec says that is success. Where subnet.env still describes the node, the delegate is
 * asked to DEL anyway, so host-local frees an address a lost state file would leak.
 */
async function delWithoutState(ctx: Ctx): Promise<void> {
  const r = readSubnetEnv(ctx.conf.subnetFile);
  if (r.kind !== "ok") return;
  const delegate = buildDelegateConf(ctx.conf, r.env);
  try {
    await invokeDelegate({
      command: "DEL",
      type: delegate.type,
      conf: delegate,
      env: ctx.opts.env,
      path: ctx.env.path,
    });
  } catch (e) {
    ctx.log.debug("DEL without stored state: the delegate's DEL failed; nothing to undo", {
      error: errorText(e),
    });
  }
}

async function cmdCheck(ctx: Ctx): Promise<void> {
  const { env, conf, state } = ctx;
  requireCheckSupport(conf.cniVersion);
  const stored = state.loadConf();
  if (!stored)
    throw new CniError(
      CNI_ERR.UNKNOWN_CONTAINER,
      `container ${env.containerId} is unknown: no stored config in ${conf.dataDir}`,
    );
  if (!conf.prevResult)
    throw new CniError(CNI_ERR.INVALID_CONFIG, "CHECK needs prevResult in the network config");
  const prev = routesWithGateways(convertResult(parseResult(conf.prevResult, "prevResult"), conf.cniVersion));
  const type = typeof stored.type === "string" ? stored.type : "bridge";
  await invokeDelegate({
    command: "CHECK",
    type,
    conf: { ...stored, cniVersion: conf.cniVersion, prevResult: prev },
    env: ctx.opts.env,
    path: env.path,
  });
  const ep = state.loadEndpoint();
  if (ep && (await ctx.host.ifindex(ep.hostVeth)) !== ep.ifindex)
    throw new CniError(
      CNI_ERR.DELEGATE_FAILED,
      `host-side veth ${ep.hostVeth} (ifindex ${ep.ifindex}) of pod ${ep.ip} is gone or was replaced`,
    );
}
