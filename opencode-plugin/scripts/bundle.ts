// Bundles the plugin and everything it imports (@opencode-ai/plugin, zod)
// into one file, bundle/pocketbrain.js, which the bridge embeds and installs
// as <workspace>/.opencode/plugin/pocketbrain.js: OpenCode then loads the
// tools from disk alone, with nothing to install from a package registry.
//
//   npm run bundle         writes the file
//   npm run bundle:check   fails when the checked-in file is not what the
//                          sources build to (esbuild's output is the same
//                          for the same version and input)
import { readFileSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { build } from "esbuild"

const root = fileURLToPath(new URL("..", import.meta.url))
const out = `${root}bundle/pocketbrain.js`

const BANNER = [
  "// PocketBrain's tools for OpenCode, with their dependencies, in one file.",
  "// Generated from opencode-plugin/ by `npm run bundle`: do not edit.",
  "// The bridge installs it as <workspace>/.opencode/plugin/pocketbrain.js.",
].join("\n")

const result = await build({
  entryPoints: [`${root}plugin/pocketbrain.ts`],
  absWorkingDir: root,
  bundle: true,
  format: "esm",
  platform: "node",
  target: "es2022",
  // OpenCode runs the file on Bun; node: built-ins stay imports.
  packages: "bundle",
  legalComments: "inline",
  charset: "utf8",
  banner: { js: BANNER },
  write: false,
  logLevel: "warning",
})
const file = result.outputFiles[0]
if (!file) throw new Error("esbuild wrote no output")
const built = file.text

if (process.argv.includes("--check")) {
  let current = ""
  try {
    current = readFileSync(out, "utf8")
  } catch {
    // missing: reported below
  }
  if (current !== built) {
    console.error("bundle/pocketbrain.js is not what the sources build to: run `npm run bundle` in opencode-plugin/ and commit it")
    process.exit(1)
  }
  console.log("bundle/pocketbrain.js is up to date")
} else {
  writeFileSync(out, built)
  console.log(`wrote ${out} (${built.length} bytes)`)
}
