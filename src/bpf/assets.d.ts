/** Files imported `with { type: "file" }`: the import is the file's path (embedded in a compiled binary). */
declare module "*.bpf.o" {
  const path: string;
  export default path;
}
