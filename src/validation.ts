/**
 * Turns valibot issues into one line a person can act on: the field, the value
 * given and what is allowed. Used at every boundary (argv, files, registry, HTTP, CNI).
 */
import * as v from "valibot";

export function issueLine(issue: v.BaseIssue<unknown>): string {
  const path = v.getDotPath(issue);
  const got = issue.input === undefined ? "nothing" : JSON.stringify(issue.input);
  return `${path ? `${path}: ` : ""}${issue.message} (got ${got})`;
}

export function issuesText(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues.map(issueLine).join("; ");
}

/** Thrown when input fails validation; `message` is already written for an operator. */
export class ValidationError extends Error {
  override name = "ValidationError";
}

/** Parses `input` against `schema` or throws a ValidationError prefixed with `what`. */
export function parseOrThrow<S extends v.GenericSchema>(
  schema: S,
  input: unknown,
  what: string,
): v.InferOutput<S> {
  const r = v.safeParse(schema, input);
  if (!r.success) throw new ValidationError(`${what}: ${issuesText(r.issues)}`);
  return r.output;
}

/** Levenshtein distance between two words, for "did you mean". */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The name in `names` closest to `word` (letter case aside), if within `maxDistance` edits. */
export function closestName(word: string, names: readonly string[], maxDistance = 2): string | null {
  let best: { name: string; d: number } | null = null;
  for (const name of names) {
    const d = editDistance(word.toLowerCase(), name.toLowerCase());
    if (d <= maxDistance && (!best || d < best.d)) best = { name, d };
  }
  return best?.name ?? null;
}
