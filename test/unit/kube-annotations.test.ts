import { describe, expect, test } from "bun:test";
import {
  annotatedPublicIp,
  annotationNames,
  annotationPatch,
  backendDataValue,
  DEFAULT_ANNOTATION_PREFIX,
  desiredAnnotations,
} from "../../src/kube/annotations.ts";
import {
  kubeTime,
  NETWORK_UP_MESSAGE,
  NETWORK_UP_REASON,
  networkUnavailableCondition,
  networkUpPatch,
} from "../../src/kube/condition.ts";
import { ValidationError } from "../../src/validation.ts";

describe("annotation prefix (flannel's newAnnotations rules)", () => {
  // the cases of flannel's annotations_test.go, and what they give
  const ok: [string, string][] = [
    ["flannel.alpha.coreos.com", "flannel.alpha.coreos.com/backend-type"],
    ["flannel.alpha.coreos.com/", "flannel.alpha.coreos.com/backend-type"],
    ["flannel.alpha.coreos.com/prefix", "flannel.alpha.coreos.com/prefix-backend-type"],
    ["flannel.alpha.coreos.com/prefix-", "flannel.alpha.coreos.com/prefix-backend-type"],
    ["org.com", "org.com/backend-type"],
    ["org9.com", "org9.com/backend-type"],
    ["org.com/9", "org.com/9-backend-type"],
  ];
  for (const [prefix, want] of ok)
    test(`${prefix} → ${want}`, () => expect(annotationNames(prefix).backendType).toBe(want));

  for (const bad of ["org", "org/", "org/prefix", "org.COM", "org.com/PREFIX", "a.com/b/c"])
    test(`${bad} is refused with a line naming the flag`, () => {
      expect(() => annotationNames(bad)).toThrow(ValidationError);
      expect(() => annotationNames(bad)).toThrow(`--kube-annotation-prefix=${JSON.stringify(bad)}`);
    });

  test("the default prefix names all ten annotations", () => {
    expect(annotationNames()).toEqual({
      kubeSubnetManager: "flannel.alpha.coreos.com/kube-subnet-manager",
      backendType: "flannel.alpha.coreos.com/backend-type",
      backendData: "flannel.alpha.coreos.com/backend-data",
      backendV6Data: "flannel.alpha.coreos.com/backend-v6-data",
      publicIp: "flannel.alpha.coreos.com/public-ip",
      publicIpv6: "flannel.alpha.coreos.com/public-ipv6",
      nodePublicIp: "flannel.alpha.coreos.com/node-public-ip",
      nodePublicIpv6: "flannel.alpha.coreos.com/node-public-ipv6",
      publicIpOverwrite: "flannel.alpha.coreos.com/public-ip-overwrite",
      publicIpv6Overwrite: "flannel.alpha.coreos.com/public-ipv6-overwrite",
    });
    expect(DEFAULT_ANNOTATION_PREFIX).toBe("flannel.alpha.coreos.com");
  });
});

describe("what a node publishes", () => {
  const names = annotationNames();
  const vxlan = {
    publicIp: "198.18.0.2",
    backendType: "vxlan",
    vxlan: { VNI: 1, VtepMAC: "0E:7A:01:12:00:02" },
  };

  test("backend-data byte for byte as flanneld's json.Marshal(vxlanLeaseAttrs), null for host-gw", () => {
    expect(backendDataValue(vxlan.vxlan)).toBe('{"VNI":1,"VtepMAC":"0e:7a:01:12:00:02"}');
    expect(backendDataValue({ VNI: 4096, VtepMAC: "aa:bb:cc:dd:ee:ff" })).toBe(
      '{"VNI":4096,"VtepMAC":"aa:bb:cc:dd:ee:ff"}',
    );
    expect(backendDataValue(null)).toBe("null");
  });

  test("a vxlan node's four annotations, exactly as a flanneld node carries them", () => {
    expect(desiredAnnotations(names, vxlan, {})).toEqual({
      "flannel.alpha.coreos.com/backend-type": "vxlan",
      "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"0e:7a:01:12:00:02"}',
      "flannel.alpha.coreos.com/public-ip": "198.18.0.2",
      "flannel.alpha.coreos.com/kube-subnet-manager": "true",
    });
  });

  test("host-gw publishes backend-data null, as flanneld", () => {
    const d = desiredAnnotations(names, { publicIp: "198.18.0.3", backendType: "host-gw", vxlan: null }, {});
    expect(d[names.backendData]).toBe("null");
    expect(d[names.publicIp]).toBe("198.18.0.3");
  });

  test("a vxlan node without data publishes only its type and the manager flag (flannel's rule)", () => {
    expect(desiredAnnotations(names, { ...vxlan, vxlan: null }, {})).toEqual({
      [names.backendType]: "vxlan",
      [names.kubeSubnetManager]: "true",
    });
  });

  test("public-ip-overwrite wins over the address the agent chose", () => {
    const d = desiredAnnotations(names, vxlan, { [names.publicIpOverwrite]: "203.0.113.7" });
    expect(d[names.publicIp]).toBe("203.0.113.7");
    // an empty overwrite is no overwrite
    expect(desiredAnnotations(names, vxlan, { [names.publicIpOverwrite]: "" })[names.publicIp]).toBe(
      "198.18.0.2",
    );
  });

  test("node-public-ip is read as the operator's choice of our address", () => {
    expect(annotatedPublicIp(names, { [names.nodePublicIp]: "198.18.7.7" })).toBe("198.18.7.7");
    expect(annotatedPublicIp(names, {})).toBeNull();
  });

  test("the patch holds only what differs, keys sorted as Go marshals a map; none when all equal", () => {
    const desired = desiredAnnotations(names, vxlan, {});
    expect(annotationPatch({}, desired)).toBe(
      '{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"{\\"VNI\\":1,\\"VtepMAC\\":\\"0e:7a:01:12:00:02\\"}","flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"198.18.0.2"}}}',
    );
    const current = { ...desired, "other/annotation": "kept" };
    expect(annotationPatch(current, desired)).toBeNull();
    expect(annotationPatch({ ...current, [names.publicIp]: "198.18.0.9" }, desired)).toBe(
      '{"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ip":"198.18.0.2"}}}',
    );
  });
});

describe("NetworkUnavailable condition", () => {
  const now = new Date("2026-03-04T05:06:07.890Z");

  test("Go's metav1.Time form", () => expect(kubeTime(now)).toBe("2026-03-04T05:06:07Z"));

  test("the patch flanneld sends, in NodeCondition's field order", () => {
    expect(networkUpPatch({ conditions: [{ type: "Ready", status: "True" }] }, now)).toBe(
      '{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","lastHeartbeatTime":"2026-03-04T05:06:07Z","lastTransitionTime":"2026-03-04T05:06:07Z","reason":"FlannelIsUp","message":"Flannel is running on this node"}]}}',
    );
    expect(networkUpPatch(undefined, now)).not.toBeNull();
  });

  test("no patch when the condition already says so", () => {
    const status = {
      conditions: [
        { type: "Ready", status: "True" },
        {
          type: "NetworkUnavailable",
          status: "False",
          reason: NETWORK_UP_REASON,
          message: NETWORK_UP_MESSAGE,
        },
      ],
    };
    expect(networkUnavailableCondition(status)?.reason).toBe("FlannelIsUp");
    expect(networkUpPatch(status, now)).toBeNull();
  });

  test("True → False is a transition now; a False with another reason keeps its transition time", () => {
    const t = (s: string | null) => (s ? JSON.parse(s).status.conditions[0].lastTransitionTime : null);
    expect(
      t(
        networkUpPatch(
          { conditions: [{ type: "NetworkUnavailable", status: "True", reason: "NoRouteCreated" }] },
          now,
        ),
      ),
    ).toBe("2026-03-04T05:06:07Z");
    const p = networkUpPatch(
      {
        conditions: [
          {
            type: "NetworkUnavailable",
            status: "False",
            reason: "RouteCreated",
            lastTransitionTime: "2025-01-01T00:00:00Z",
          },
        ],
      },
      now,
    );
    expect(t(p)).toBe("2025-01-01T00:00:00Z");
    expect(JSON.parse(p!).status.conditions[0].reason).toBe("FlannelIsUp");
  });
});
