// Bundle the participant page into the Python package: src/vizprobe/experiment/static/{index.html,app.js,app.css}.
// The output folder is rebuilt from scratch every time (it is gitignored; never edit it by hand).
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const out = here("../src/vizprobe/experiment/static/");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: { app: here("src/experiment.js") }, // its CSS import becomes app.css
  bundle: true,
  format: "esm",
  target: ["es2022", "chrome100", "firefox100", "safari15"],
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  outdir: out,
  logLevel: "warning",
});
// index.html last: the Makefile uses it as the stamp of a complete build.
await copyFile(here("src/index.html"), `${out}index.html`);
console.log(`built ${out}`);
