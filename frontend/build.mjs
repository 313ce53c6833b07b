// Bundle the participant page into the Python package: src/vizprobe/experiment/static/{index.html,start.html,app.js,app.css,start.js,start.css}.
// The output folder is rebuilt from scratch every time (it is gitignored; never edit it by hand).
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const out = here("../src/vizprobe/experiment/static/");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  // app: the participant page (its CSS import becomes app.css); start: the MTurk HIT's start page (start.css)
  entryPoints: { app: here("src/experiment.js"), start: here("src/start.js") },
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
await copyFile(here("src/start.html"), `${out}start.html`);
await copyFile(here("src/index.html"), `${out}index.html`);
console.log(`built ${out}`);
