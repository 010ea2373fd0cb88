// Bundles the console into dist/: index.html, console.js and console.css, the three
// files the server embeds. Deterministic: same sources and node_modules, same bytes
// (no timestamps, no source maps, no content hashes in names).
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const outdir = "dist";
await rm(outdir, { recursive: true, force: true });
await mkdir(outdir);

const common = {
  bundle: true,
  minify: true,
  legalComments: "eof",
  target: ["es2020", "chrome109", "firefox115", "safari16"],
  logLevel: "warning",
};
await build({ ...common, entryPoints: ["src/main.ts"], outfile: `${outdir}/console.js`, format: "iife" });
await build({ ...common, entryPoints: ["src/console.css"], outfile: `${outdir}/console.css` });
await copyFile("src/index.html", `${outdir}/index.html`);
