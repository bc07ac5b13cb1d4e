/**
 * One doctor run as a function, with no CLI in it: gather the node's facts, judge every
 * check, optionally repair what is safe and judge again. `tartan doctor` (src/cli/doctor.ts)
 * and the agent's GET /v1/doctor both call `runChecks`.
 */

import { DEFAULT_BRIDGE } from "../backend/facts.ts";
import type { AgentOptions } from "../config/options.ts";
import type { KubeSourceView } from "../lease/kube-source.ts";
import { judge } from "./checks.ts";
import type { AgentFacts, RegistryFacts } from "./facts.ts";
import { applyFixes } from "./fix.ts";
import { type GatherOptions, gatherFacts } from "./gather.ts";
import { type DoctorReport, exitCodeOf, type FixResult, summarize } from "./report.ts";
import { type DoctorInput, SHARED_SETTINGS } from "./settings.ts";

export const DEFAULT_CNI_CONF_DIR = "/etc/cni/net.d";

export interface DoctorRunOptions {
  readonly input: DoctorInput;
  readonly fix: boolean;
  readonly strict: boolean;
  readonly probe: boolean;
  readonly probeTimeoutS: number;
  /** Inside the agent: its own status and options, instead of asking itself over HTTP. */
  readonly agent?: () => Promise<AgentFacts>;
  /** Inside the agent: its own view of the registry (see GatherOptions.registry). */
  readonly registry?: () => RegistryFacts;
  /** Probe a rotating sample of the peers (see GatherOptions.probeSample). */
  readonly probeSample?: GatherOptions["probeSample"];
  /** Inside a --kube-subnet-mgr agent: its Node list and watch, instead of listing every Node again. */
  readonly kubeView?: () => KubeSourceView | null;
}

/**
 * Doctor input for a process that already has the agent's options (the agent itself):
 * every option counts as given, so nothing is looked up elsewhere.
 */
export function doctorInputFromAgent(
  o: AgentOptions,
  extra: { bridge?: string; cniConfDir?: string } = {},
): DoctorInput {
  return {
    agent: o,
    explicit: new Set(SHARED_SETTINGS),
    bridge: extra.bridge ?? DEFAULT_BRIDGE,
    cniConfDir: extra.cniConfDir ?? DEFAULT_CNI_CONF_DIR,
  };
}

/** One doctor run: gather, judge, and with `fix` repair and judge again. */
export async function runChecks(opts: DoctorRunOptions): Promise<DoctorReport> {
  const gather = () =>
    gatherFacts({
      input: opts.input,
      probe: opts.probe,
      probeTimeoutS: opts.probeTimeoutS,
      agent: opts.agent,
      registry: opts.registry,
      probeSample: opts.probeSample,
      kubeView: opts.kubeView,
    });
  let facts = await gather();
  let checks = judge(facts);
  let fixes: FixResult[] | undefined;
  if (opts.fix) {
    fixes = await applyFixes(facts, checks);
    if (fixes.length > 0) {
      facts = await gather();
      checks = judge(facts);
    }
  }
  const cfgBackend = facts.config.ok ? facts.config.value.backend.type : null;
  return {
    node: facts.settings.nodeName,
    backend: facts.settings.backend ?? cfgBackend,
    kernel: facts.kernel,
    at: new Date(facts.now).toISOString(),
    settings: {
      subnetFile: facts.settings.subnetFile,
      ipMasq: facts.settings.ipMasq,
      bpffs: facts.settings.bpffs,
      bridge: facts.settings.bridge,
      cniConfDir: facts.settings.cniConfDir,
      http: facts.settings.http,
      sources: facts.settings.sources,
    },
    checks,
    probes: facts.probes,
    ...(fixes ? { fixes } : {}),
    summary: summarize(checks),
    exitCode: exitCodeOf(checks, opts.strict),
  };
}
