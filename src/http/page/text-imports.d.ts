/** Text files imported `with { type: "text" }`: the import is the file's content (embedded in a compiled binary). */
declare module "*.client.js" {
  const text: string;
  export default text;
}
declare module "*.css" {
  const text: string;
  export default text;
}
