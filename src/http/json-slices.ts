/**
 * A JSON response with one large array (every lease) written a slice at a time: the
 * array's items are stringified SLICE at a time with a yield to the event loop between
 * slices, so 50,000 leases (megabytes of JSON) never hold up a health probe. The bytes
 * are exactly `JSON.stringify(value)`'s.
 */
import { SLICE, yieldToLoop } from "../slices.ts";

/**
 * `head` is the object as it is sent, with `field` holding anything where the items go
 * (its position in the output); `items` are what that array holds.
 */
export function slicedJson(
  head: Record<string, unknown>,
  field: string,
  items: readonly unknown[],
  status = 200,
): Response {
  // the array's place in the text, marked by a value nothing else in the response holds
  const placeholder = `slices-${crypto.randomUUID()}`;
  const [before, after] = JSON.stringify({ ...head, [field]: placeholder }).split(`"${placeholder}"`);
  const encoder = new TextEncoder();
  let next = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (next === 0) controller.enqueue(encoder.encode(`${before}[`));
      else await yieldToLoop();
      if (next >= items.length) {
        controller.enqueue(encoder.encode(`]${after}`));
        controller.close();
        return;
      }
      const slice = JSON.stringify(items.slice(next, next + SLICE));
      controller.enqueue(encoder.encode((next === 0 ? "" : ",") + slice.slice(1, -1)));
      next += SLICE;
    },
  });
  return new Response(body, { status, headers: { "content-type": "application/json" } });
}
