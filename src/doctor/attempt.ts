/**
 * Reading one fact without letting a broken node throw: `attempt` turns a failure into a
 * fact carrying the reason, `withTimeout` gives up on an answer that does not come.
 */
import { errorText } from "../log.ts";
import { type Fact, fact, factError } from "./facts.ts";

export async function attempt<T>(fn: () => Promise<T> | T): Promise<Fact<T>> {
  try {
    return fact(await fn());
  } catch (e) {
    return factError(errorText(e));
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
