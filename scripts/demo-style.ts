/**
 * How the demo marks its steps: bold only on a terminal, and never with NO_COLOR set
 * (https://no-color.org), so a piped or logged demo carries no escape codes.
 */
export function useColour(isTTY: boolean | undefined, env: Record<string, string | undefined>): boolean {
  return isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === "") && env.TERM !== "dumb";
}

export function stepLine(title: string, colour: boolean): string {
  return colour ? `\n\x1b[1m== ${title}\x1b[0m` : `\n== ${title}`;
}
