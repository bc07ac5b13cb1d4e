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
