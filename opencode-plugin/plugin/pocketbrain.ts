// PocketBrain's tools for the agent. OpenCode loads this file; the bridge
// installs it as <workspace>/.opencode/plugin/pocketbrain.ts, with the
// modules of ../pocketbrain/ beside it. Export nothing else from here:
// OpenCode takes every export of a plugin file for a plugin.
import type { Plugin } from "@opencode-ai/plugin"
import { hideSecrets } from "../pocketbrain/env.ts"
import { IpcClient, readConfig } from "../pocketbrain/ipc.ts"
import { makeTools } from "../pocketbrain/tools.ts"

// The tools, and the server password and provider keys kept out of the
// environment of the agent's shell commands.
export const PocketBrain: Plugin = async () => ({
  tool: makeTools(IpcClient.fromConfig()),
  "shell.env": hideSecrets(readConfig().secret_env ?? []),
})
