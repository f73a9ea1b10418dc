// One definition of tool names and limits on this side (pocketbrain/contract.ts),
// written to fixtures/contract.json for the bridge's tests to check theirs against.
import assert from "node:assert/strict"
import { readdirSync, readFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { test } from "node:test"
import { contractJson, TOOL_NAMES, TOOL_PREFIX } from "../pocketbrain/contract.ts"
import type { ToolSpec } from "../pocketbrain/spec.ts"
import { makeTools, SPECS } from "../pocketbrain/tools.ts"
import { readJson, root } from "./fixtures.ts"

test("fixtures/contract.json is written from contract.ts (run `npm run contract` after a change)", () => {
  assert.deepEqual(readJson("fixtures/contract.json"), contractJson())
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

test("the workspace manifest pins the same @opencode-ai/plugin as this package", () => {
  type Manifest = { dependencies: Record<string, string> }
  type Lock = { packages: Record<string, { version?: string; dependencies?: Record<string, string> }> }
  const own = readJson<Manifest>("package.json").dependencies["@opencode-ai/plugin"]
  const runtime = readJson<Manifest>("runtime/package.json")
  assert.deepEqual(runtime.dependencies, { "@opencode-ai/plugin": own })
  const lock = readJson<Lock>("runtime/package-lock.json")
  assert.deepEqual(lock.packages[""]?.dependencies, runtime.dependencies)
  assert.equal(lock.packages["node_modules/@opencode-ai/plugin"]?.version, own)
})

test("the entry exports only the plugin, and the repository's shim re-exports it", async () => {
  const entry = await import("../plugin/pocketbrain.ts")
  assert.deepEqual(Object.keys(entry), ["PocketBrain"])
  // The shim is outside this package (no "type": "module" above it), so Node
  // would load it as CommonJS; read it instead. tsconfig.json type-checks it.
  const shim = `${root}../.opencode/plugin/pocketbrain.ts`
  const exports = [...readFileSync(shim, "utf8").matchAll(/^export (.*)$/gm)].map((m) => m[1])
  assert.equal(exports.length, 1, "the shim has one export line")
  const m = /^\{ (\w+) \} from "(\.[^"]+)"$/.exec(exports[0] ?? "")
  assert.ok(m, `an export of one name from a relative path: ${exports[0]}`)
  assert.deepEqual([m[1]], Object.keys(entry))
  assert.equal(resolve(dirname(shim), m[2] ?? ""), resolve(root, "plugin/pocketbrain.ts"))
})
