/**
 * flanneld's flags that Tartan does not implement, declared so that a unit file written for
 * flanneld gets one clear line instead of "unknown flag": refused with what to do instead,
 * or accepted and ignored (with a log line) where Tartan already does what the flag tunes.
 * The list is flanneld's main.go (current and removed flags) and glog's `-v`.
 */
import { booleanFlag, type FlagSet, stringFlag } from "./flag-def.ts";
import { wholeNumber } from "./values.ts";

const MULTI_NETWORK =
  "flannel's multi-network mode (removed in flannel 0.5.6) is not supported; run one agent per network, each with its own --subnet-file";
const CLIENT_SERVER =
  "flannel's client/server mode (removed in flannel 0.8) is not supported; point every agent at etcd with --etcd-endpoints=…";
const IPSEC = "flannel's ipsec backend is not supported; use Backend.Type vxlan, ebpf-vxlan or host-gw";

/** flanneld flags for what Tartan does not do: refused, each with what to do instead. */
export const REFUSED_FLANNELD_FLAGS = {
  "ip-blackhole-route": booleanFlag({
    env: true,
    refuse: "Tartan adds no blackhole route for the node's subnet; remove the flag",
    help: "add a blackhole route for the node's own subnet",
  }),
  "subnet-dir": stringFlag({ env: true, refuse: MULTI_NETWORK, help: "multi-network subnet files" }),
  networks: stringFlag({ env: true, refuse: MULTI_NETWORK, help: "multi-network mode's networks" }),
  listen: stringFlag({ env: true, refuse: CLIENT_SERVER, help: "client/server mode: serve leases" }),
  remote: stringFlag({ env: true, refuse: CLIENT_SERVER, help: "client/server mode: the server" }),
  "remote-keyfile": stringFlag({ env: true, refuse: CLIENT_SERVER, help: "client/server mode TLS" }),
  "remote-certfile": stringFlag({ env: true, refuse: CLIENT_SERVER, help: "client/server mode TLS" }),
  "remote-cafile": stringFlag({ env: true, refuse: CLIENT_SERVER, help: "client/server mode TLS" }),
  "charon-exec-path": stringFlag({ env: true, refuse: IPSEC, help: "ipsec backend: charon binary" }),
  "charon-vici-uri": stringFlag({ env: true, refuse: IPSEC, help: "ipsec backend: charon's VICI socket" }),
  "use-multi-cluster-cidr": booleanFlag({
    env: true,
    refuse:
      "flannel's MultiClusterCIDR mode (alpha, since removed from flannel) is not supported; remove the flag",
    help: "MultiClusterCIDR API",
  }),
} satisfies FlagSet;

/** flanneld flags that tune what Tartan does its own way: accepted, logged, and ignored. */
export const IGNORED_FLANNELD_FLAGS = {
  "iptables-resync": stringFlag({
    env: true,
    value: wholeNumber(1, 86_400, "a whole number of seconds"),
    ignore: "Tartan keeps its masquerading in one nft table, checked every 5 s and re-applied if removed",
    help: "resync period of flanneld's iptables rules",
  }),
  "iptables-forward-rules": booleanFlag({
    env: true,
    ignore:
      "Tartan adds no FORWARD rules; if the FORWARD chain drops, `tartan doctor` says so and `--fix` accepts the cluster network",
    help: "add ACCEPT rules for the cluster network to the FORWARD chain",
  }),
  "ip-masq-fully-random-disable": booleanFlag({
    env: true,
    ignore: "Tartan masquerades with nftables, which always supports fully random ports",
    help: "masquerade without fully random ports",
  }),
  vmodule: stringFlag({
    env: true,
    ignore: "glog's per-file verbosity; Tartan's is --log-level",
    help: "glog",
  }),
  log_backtrace_at: stringFlag({ env: true, ignore: "glog's; Tartan has no such log option", help: "glog" }),
} satisfies FlagSet;

/** glog's verbosity as flanneld takes it (`-v=2`): 1 and above mean --log-level=debug. */
export const VERBOSITY_FLAG = {
  v: stringFlag({
    env: true,
    value: wholeNumber(0, 10, "a verbosity level 0..10, as glog's -v"),
    help: "flanneld's log verbosity: 0 = --log-level=info, 1 or more = debug (an explicit --log-level wins)",
  }),
} satisfies FlagSet;
