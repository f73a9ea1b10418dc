// The shell.env hook keeps the server password and keys out of the agent's shell.
import assert from "node:assert/strict"
import { spawnSync } from "node:child_process"
import { test } from "node:test"
import { hideSecrets, isSecretName } from "../pocketbrain/env.ts"

test("secret names: the server's credentials, key-shaped names, and the bridge's list", () => {
  const listed = new Set(["MY_PROVIDER_CREDENTIAL"])
  for (const n of [
    "OPENCODE_SERVER_PASSWORD",
    "OPENCODE_SERVER_USERNAME",
    "ANTHROPIC_API_KEY",
    "GITHUB_TOKEN",
    "CLIENT_SECRET",
    "DB_PASSWORD",
    "MY_PROVIDER_CREDENTIAL",
  ]) {
    assert.ok(isSecretName(n, listed), n)
  }
  for (const n of ["PATH", "HOME", "LANG", "OPENCODE_CLIENT", "TOKENIZER_PATH"]) {
    assert.ok(!isSecretName(n, listed), n)
  }
})

test("the hook removes secrets from the command's environment, as OpenCode merges it", async () => {
  const source = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    OPENCODE_SERVER_PASSWORD: "pw",
    OPENROUTER_API_KEY: "sk",
    MY_PROVIDER_CREDENTIAL: "c",
    KEEP_ME: "yes",
  }
  const output = { env: {} as Record<string, string> }
  await hideSecrets(["MY_PROVIDER_CREDENTIAL"], source)({ cwd: "/" }, output)
  assert.deepEqual(Object.keys(output.env).sort(), ["MY_PROVIDER_CREDENTIAL", "OPENCODE_SERVER_PASSWORD", "OPENROUTER_API_KEY"])
  // What OpenCode 1.18.33 does with it: { ...process.env, ...output.env }, then spawn.
  const env = { ...source, ...output.env }
  const seen = spawnSync("env", [], { env, encoding: "utf8" }).stdout
  assert.match(seen, /^KEEP_ME=yes$/m)
  assert.doesNotMatch(seen, /OPENCODE_SERVER_PASSWORD|OPENROUTER_API_KEY|MY_PROVIDER_CREDENTIAL/)
})

test("a secret another plugin put into output.env is removed too", async () => {
  const output = { env: { SOME_TOKEN: "t", FINE: "1" } as Record<string, string> }
  await hideSecrets([], {})({ cwd: "/" }, output)
  assert.equal(output.env.SOME_TOKEN, undefined)
  assert.equal(output.env.FINE, "1")
})
