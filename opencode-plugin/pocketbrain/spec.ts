// The shape of one tool, for the files in ./tools/ (one per tool: its
// description, beside its arguments). What a tool does is the bridge's
// business (src/tools.rs); the plugin only forwards the call.
import { tool } from "@opencode-ai/plugin"
import type { ToolName } from "./contract.ts"

export const z = tool.schema

export type ToolSpec<Args extends Record<string, unknown> = Record<string, unknown>> = {
  /** The name in requests; OpenCode sees `pocketbrain_<name>`. */
  name: ToolName
  /** What the model reads to decide when and how to call the tool. */
  description: string
  /** zod schemas of the arguments, checked by OpenCode before the call. */
  args: Args
}

export function defineTool<const Args extends Parameters<typeof tool>[0]["args"]>(spec: ToolSpec<Args>): ToolSpec<Args> {
  return spec
}

/** The `chat` argument that several tools share. */
export const chatArg = z
  .string()
  .optional()
  .describe("Only from the main chat: the JID of another registered chat to act on. Omit to use the current chat.")
