/**
 * The three PATCH flavours of the Kubernetes API, for the stand-in API server: JSON merge
 * patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch (lists merged by key
 * where the type says so — a Node's conditions and addresses by `type`, podCIDRs and
 * finalizers as sets — with the `$patch`, `$retainKeys`, `$setElementOrder` and
 * `$deleteFromPrimitiveList` directives). Plain JSON values in, new values out.
 */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** A patch the server cannot apply; `code` is the HTTP status the API server answers with. */
export class PatchError extends Error {
  override name = "PatchError";
  constructor(
    message: string,
    readonly code: 400 | 422,
  ) {
    super(message);
  }
}

const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** RFC 7386: objects merge recursively, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): Json {
  if (!isObject(patch)) return patch as Json;
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/"))
    throw new PatchError(`json patch: path ${JSON.stringify(path)} must start with /`, 400);
  return path
    .slice(1)
    .split("/")
    .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
}

function parentOf(doc: Json, parts: string[], path: string): { parent: Json; last: string } {
  let cur: Json = doc;
  for (const p of parts.slice(0, -1)) {
    const next: Json | undefined = Array.isArray(cur) ? cur[Number(p)] : isObject(cur) ? cur[p] : undefined;
    if (next === undefined) throw new PatchError(`json patch: path ${path} does not exist`, 422);
    cur = next;
  }
  return { parent: cur, last: parts[parts.length - 1]! };
}

function getAt(doc: Json, path: string): Json {
  let cur: Json | undefined = doc;
  for (const p of pointer(path)) {
    cur = Array.isArray(cur) ? cur[Number(p)] : isObject(cur) ? cur[p] : undefined;
    if (cur === undefined) throw new PatchError(`json patch: path ${path} does not exist`, 422);
  }
  return cur;
}

function removeAt(doc: Json, path: string): Json {
  const parts = pointer(path);
  if (parts.length === 0) throw new PatchError("json patch: cannot remove the document", 422);
  const { parent, last } = parentOf(doc, parts, path);
  if (Array.isArray(parent)) {
    const i = Number(last);
    if (!Number.isInteger(i) || i < 0 || i >= parent.length)
      throw new PatchError(`json patch: index ${last} out of range at ${path}`, 422);
    return parent.splice(i, 1)[0]!;
  }
  if (!isObject(parent) || !(last in parent))
    throw new PatchError(`json patch: path ${path} does not exist`, 422);
  const old = parent[last]!;
  delete parent[last];
  return old;
}

function addAt(doc: Json, path: string, value: Json, replace: boolean): Json {
  const parts = pointer(path);
  if (parts.length === 0) return value;
  const { parent, last } = parentOf(doc, parts, path);
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length || (replace && i >= parent.length))
      throw new PatchError(`json patch: index ${last} out of range at ${path}`, 422);
    parent.splice(i, replace ? 1 : 0, value);
  } else if (isObject(parent)) {
    if (replace && !(last in parent)) throw new PatchError(`json patch: path ${path} does not exist`, 422);
    parent[last] = value;
  } else throw new PatchError(`json patch: the parent of ${path} is not an object or array`, 422);
  return doc;
}

/** RFC 6902: add, remove, replace, move, copy, test, applied in order to a copy. */
export function jsonPatch(target: unknown, ops: unknown): Json {
  if (!Array.isArray(ops))
    throw new PatchError("json patch: the body must be a JSON array of operations", 400);
  let doc = structuredClone(target) as Json;
  for (const op of ops) {
    if (!isObject(op) || typeof op.op !== "string" || typeof op.path !== "string")
      throw new PatchError(`json patch: ${JSON.stringify(op)} is not an operation`, 400);
    const path = op.path;
    switch (op.op) {
      case "add":
        doc = addAt(doc, path, structuredClone(op.value ?? null), false);
        break;
      case "remove":
        removeAt(doc, path);
        break;
      case "replace":
        doc = addAt(doc, path, structuredClone(op.value ?? null), true);
        break;
      case "move": {
        const v = removeAt(doc, String(op.from));
        doc = addAt(doc, path, v, false);
        break;
      }
      case "copy":
        doc = addAt(doc, path, structuredClone(getAt(doc, String(op.from))), false);
        break;
      case "test":
        if (JSON.stringify(getAt(doc, path)) !== JSON.stringify(op.value ?? null))
          throw new PatchError(`json patch: test failed at ${path}`, 422);
        break;
      default:
        throw new PatchError(`json patch: unknown op ${JSON.stringify(op.op)}`, 400);
    }
  }
  return doc;
}

/** How a list field merges in a strategic merge patch (Go struct tags patchStrategy/patchMergeKey). */
export type ListStrategy = { readonly mergeKey: string } | { readonly primitive: true };
/** Field path (dotted, from the object root) → list strategy; paths not listed are replaced. */
export type PatchSchema = Readonly<Record<string, ListStrategy>>;

export const NODE_PATCH_SCHEMA: PatchSchema = {
  "metadata.finalizers": { primitive: true },
  "metadata.ownerReferences": { mergeKey: "uid" },
  "spec.podCIDRs": { primitive: true },
  "status.conditions": { mergeKey: "type" },
  "status.addresses": { mergeKey: "type" },
};

const SET_ORDER = "$setElementOrder/";
const DELETE_FROM = "$deleteFromPrimitiveList/";

function mergeList(
  path: string,
  orig: Json[],
  patch: Json[],
  strat: ListStrategy,
  schema: PatchSchema,
): Json[] {
  if ("primitive" in strat) {
    const out = [...orig];
    for (const v of patch) if (!out.some((o) => JSON.stringify(o) === JSON.stringify(v))) out.push(v);
    return out;
  }
  const key = strat.mergeKey;
  if (patch.some((p) => isObject(p) && p.$patch === "replace"))
    return patch.filter((p) => !(isObject(p) && p.$patch === "replace"));
  const out = [...orig];
  for (const item of patch) {
    if (!isObject(item) || !(key in item))
      throw new PatchError(`strategic merge patch: items of ${path} need the merge key ${key}`, 400);
    const at = out.findIndex((o) => isObject(o) && o[key] === item[key]);
    if (item.$patch === "delete") {
      if (at >= 0) out.splice(at, 1);
      continue;
    }
    if (at >= 0) out[at] = strategicMerge(path, out[at]!, item, schema) ?? out[at]!;
    else out.push(strategicMerge(path, {}, item, schema) ?? item);
  }
  return out;
}

function orderBy(list: Json[], order: Json, strat: ListStrategy | undefined): Json[] {
  if (!Array.isArray(order) || !strat) return list;
  const id = (v: Json) => JSON.stringify("mergeKey" in strat && isObject(v) ? v[strat.mergeKey] : v);
  const rank = new Map(order.map((o, i) => [id(o), i]));
  return [...list].sort((a, b) => (rank.get(id(a)) ?? order.length) - (rank.get(id(b)) ?? order.length));
}

/** One level of a strategic merge; undefined = the map was deleted (`$patch: delete`). */
function strategicMerge(path: string, orig: Json, patch: Json, schema: PatchSchema): Json | undefined {
  if (!isObject(patch)) return patch;
  const directive = patch.$patch;
  if (directive === "delete") return undefined;
  const base: JsonObject = directive === "replace" || !isObject(orig) ? {} : { ...orig };
  const at = (k: string) => (path ? `${path}.${k}` : k);
  for (const [k, v] of Object.entries(patch)) {
    if (k === "$patch" || k === "$retainKeys" || k.startsWith(SET_ORDER)) continue;
    if (k.startsWith(DELETE_FROM)) {
      const field = k.slice(DELETE_FROM.length);
      const cur = base[field];
      if (Array.isArray(cur) && Array.isArray(v))
        base[field] = cur.filter((x) => !v.some((d) => JSON.stringify(d) === JSON.stringify(x)));
      continue;
    }
    if (k.startsWith("$")) throw new PatchError(`strategic merge patch: unknown directive ${k}`, 400);
    if (v === null) {
      delete base[k];
      continue;
    }
    const strat = schema[at(k)];
    if (Array.isArray(v) && strat && Array.isArray(base[k]))
      base[k] = mergeList(at(k), base[k] as Json[], v, strat, schema);
    else if (Array.isArray(v) && strat) base[k] = mergeList(at(k), [], v, strat, schema);
    else if (isObject(v)) {
      const merged = strategicMerge(at(k), base[k] ?? {}, v, schema);
      if (merged === undefined) delete base[k];
      else base[k] = merged;
    } else base[k] = v;
  }
  for (const [k, order] of Object.entries(patch))
    if (k.startsWith(SET_ORDER)) {
      const field = k.slice(SET_ORDER.length);
      const cur = base[field];
      if (Array.isArray(cur)) base[field] = orderBy(cur, order, schema[at(field)]);
    }
  const retain = patch.$retainKeys;
  if (Array.isArray(retain)) for (const k of Object.keys(base)) if (!retain.includes(k)) delete base[k];
  return base;
}

/** Applies a strategic merge patch to an object of the type `schema` describes. */
export function strategicMergePatch(target: unknown, patch: unknown, schema: PatchSchema): Json {
  if (!isObject(patch)) throw new PatchError("strategic merge patch: the body must be a JSON object", 400);
  return strategicMerge("", target as Json, patch, schema) ?? {};
}
