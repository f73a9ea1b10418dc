// One definition of tool names and limits on this side (pocketbrain/contract.ts),
// written to fixtures/contract.json for the bridge's tests to check theirs against.
import assert from "node:assert/strict"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { test } from "node:test"
import { contractJson, LIMITS, TOOL_NAMES, TOOL_PREFIX } from "../pocketbrain/contract.ts"
import type { ToolSpec } from "../pocketbrain/spec.ts"
import { argsContract, makeTools, SPECS } from "../pocketbrain/tools.ts"
import { readJson, root } from "./fixtures.ts"

test("fixtures/contract.json is written from contract.ts and the tools' schemas (run `npm run contract` after a change)", () => {
  assert.deepEqual(readJson("fixtures/contract.json"), { ...contractJson(), args: argsContract() })
})

test("the contract records each tool's arguments as OpenCode checks them", () => {
  const args = argsContract()
  assert.deepEqual(Object.keys(args), [...TOOL_NAMES])
  assert.deepEqual(args.send_file, {
    path: { required: true, max_chars: LIMITS.sendFilePathChars },
    caption: { required: false, max_chars: LIMITS.sendFileCaptionChars },
  })
  assert.deepEqual(args.schedule_task?.schedule_type, { required: true, one_of: ["cron", "interval", "once"] })
  // A tool's arguments as the model sees them are exactly these.
  for (const spec of SPECS) assert.deepEqual(Object.keys(args[spec.name] ?? {}), Object.keys(spec.args), spec.name)
})

test("every tool has its own file in pocketbrain/tools/, named after it, and nothing else is there", async () => {
  const files = readdirSync(`${root}pocketbrain/tools`).sort()
  assert.deepEqual(files, TOOL_NAMES.map((n) => `${n}.ts`).sort())
  for (const file of files) {
    const { spec } = (await import(`../pocketbrain/tools/${file}`)) as { spec: ToolSpec }
    assert.equal(`${spec.name}.ts`, file)
    assert.ok(spec.description.length > 20, `${file}: a description the model can use`)
  }
})

test("the plugin offers exactly the contract's tools, prefixed, in its order", () => {
  assert.deepEqual(
    SPECS.map((s) => s.name),
    [...TOOL_NAMES],
  )
  const tools = makeTools({ call: async () => assert.fail("not called") })
  assert.deepEqual(
    Object.keys(tools),
    TOOL_NAMES.map((n) => `${TOOL_PREFIX}${n}`),
  )
})

test("the lock the bridge installs names the @opencode-ai/plugin this package bundles, and no manifest goes with it", () => {
  // OpenCode skips its npm install in .opencode/ when the lock's root names
  // @opencode-ai/plugin (src/plugin.rs, NOTHING_TO_INSTALL_LOCK).
  type Manifest = { dependencies: Record<string, string> }
  type Lock = { packages: Record<string, { dependencies?: Record<string, string> }> }
  const own = readJson<Manifest>("package.json").dependencies["@opencode-ai/plugin"]
  const lock = readJson<Lock>("runtime/package-lock.json")
  assert.deepEqual(lock.packages[""]?.dependencies, { "@opencode-ai/plugin": own })
  assert.deepEqual(Object.keys(lock.packages), [""], "the lock lists no package to fetch")
  assert.deepEqual(readdirSync(`${root}runtime`), ["package-lock.json"])
})

test("the bundle offers the same tools as the sources, and the repository's shim re-exports it", async () => {
  const entry = await import("../plugin/pocketbrain.ts")
  assert.deepEqual(Object.keys(entry), ["PocketBrain"])
  // Through a URL: the generated file has no types to check against.
  const bundle = (await import(new URL("../bundle/pocketbrain.js", import.meta.url).href)) as typeof entry
  assert.deepEqual(Object.keys(bundle), ["PocketBrain"])
  const dir = mkdtempSync(join(tmpdir(), "pb-bundle-"))
  const before = process.env.PB_IPC_DIR
  process.env.PB_IPC_DIR = dir
  try {
    const hooks = await bundle.PocketBrain({} as Parameters<typeof bundle.PocketBrain>[0])
    assert.deepEqual(
      Object.keys(hooks.tool ?? {}),
      TOOL_NAMES.map((n) => `${TOOL_PREFIX}${n}`),
    )
  } finally {
    if (before === undefined) delete process.env.PB_IPC_DIR
    else process.env.PB_IPC_DIR = before
    rmSync(dir, { recursive: true, force: true })
  }
  // The shim is outside this package (no "type": "module" above it), so Node
  // would load it as CommonJS; read it instead.
  const shim = `${root}../.opencode/plugin/pocketbrain.js`
  const exports = [...readFileSync(shim, "utf8").matchAll(/^export (.*)$/gm)].map((m) => m[1])
  assert.equal(exports.length, 1, "the shim has one export line")
  const m = /^\{ (\w+) \} from "(\.[^"]+)"$/.exec(exports[0] ?? "")
  assert.ok(m, `an export of one name from a relative path: ${exports[0]}`)
  assert.deepEqual([m[1]], Object.keys(entry))
  assert.equal(resolve(dirname(shim), m[2] ?? ""), resolve(root, "bundle/pocketbrain.js"))
})
