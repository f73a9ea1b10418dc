// PocketBrain's tools for the agent. OpenCode loads this file; the bridge
// installs it as <workspace>/.opencode/plugin/pocketbrain.ts, with the
// modules of ../pocketbrain/ beside it. Export nothing else from here:
// OpenCode takes every export of a plugin file for a plugin.
import type { Plugin } from "@opencode-ai/plugin"
import { IpcClient } from "../pocketbrain/ipc.ts"
import { makeTools } from "../pocketbrain/tools.ts"

export const PocketBrain: Plugin = async () => ({ tool: makeTools(IpcClient.fromConfig()) })
