// PocketBrain's tools for the agent. This file only wires them up; each tool
// lives in ../pocketbrain/tools.ts and talks to the bridge through ../pocketbrain/ipc.ts.
import type { Plugin } from "@opencode-ai/plugin"
import { IpcClient } from "../pocketbrain/ipc"
import { makeTools } from "../pocketbrain/tools"

export const PocketBrain: Plugin = async () => ({ tool: makeTools(IpcClient.fromConfig()) })
