// The agent's PocketBrain tools, built from the specs in ./tools/. Each call
// goes through a Caller (the file IPC client); the bridge decides what is
// allowed (by the calling session, never by arguments) and writes the text
// the model sees.
import { type ToolContext, type ToolDefinition, tool } from "@opencode-ai/plugin"
import { MAX_RESULT_CHARS, TOOL_PREFIX } from "./contract.ts"
import type { Caller, Outcome } from "./ipc.ts"
import { type ToolSpec, z } from "./spec.ts"
import { spec as cancelTask } from "./tools/cancel_task.ts"
import { spec as listTasks } from "./tools/list_tasks.ts"
import { spec as pauseTask } from "./tools/pause_task.ts"
import { spec as resumeTask } from "./tools/resume_task.ts"
import { spec as scheduleTask } from "./tools/schedule_task.ts"
import { spec as sendFile } from "./tools/send_file.ts"
import { spec as sendMessage } from "./tools/send_message.ts"
import { now, startTrace, writeTrace } from "./trace.ts"

/** Every tool, in the order the model sees them. */
export const SPECS = [sendMessage, scheduleTask, listTasks, pauseTask, resumeTask, cancelTask, sendFile] as const

/** One argument as fixtures/contract.json records it (the bridge's `Arg`). */
type ArgContract = { required: boolean; max_chars?: number; one_of?: string[] }

/**
 * Every tool's arguments in the shape of fixtures/contract.json's `args`,
 * read from the zod schemas themselves (through their JSON Schema), so the
 * file says what OpenCode will check. The bridge's tests compare its own
 * specs (src/tools/) with it.
 */
export function argsContract(): Record<string, Record<string, ArgContract>> {
  return Object.fromEntries(
    SPECS.map((spec) => {
      const schema = z.toJSONSchema(z.object(spec.args)) as {
        properties?: Record<string, { type?: string; maxLength?: number; enum?: string[] }>
        required?: string[]
      }
      const args = Object.entries(schema.properties ?? {}).map(([name, p]) => {
        if (p.type !== "string") throw new Error(`${spec.name}.${name}: the bridge takes string arguments only`)
        const arg: ArgContract = { required: (schema.required ?? []).includes(name) }
        if (p.maxLength !== undefined) arg.max_chars = p.maxLength
        if (p.enum !== undefined) arg.one_of = p.enum
        return [name, arg] as const
      })
      return [spec.name, Object.fromEntries(args)]
    }),
  )
}

/** The text the model gets for an outcome. */
export function render(outcome: Outcome): string {
  if (outcome.kind === "timeout") {
    return (
      `PocketBrain did not answer within ${Math.round(outcome.waitedMs / 1000)} s (request ${outcome.id}). ` +
      "The request is queued and will be carried out when PocketBrain is back; do not repeat it."
    )
  }
  const r = outcome.response
  const text = r.ok ? r.result.text : `Error (${r.error.code}): ${r.error.message}`
  return text.length > MAX_RESULT_CHARS ? `${text.slice(0, MAX_RESULT_CHARS)}\n[truncated]` : text
}

/** OpenCode passes the call id too, though its type does not name it. */
type Context = Pick<ToolContext, "sessionID" | "messageID" | "agent"> & { callID?: string; abort?: AbortSignal }

function execute(caller: Caller, spec: ToolSpec) {
  return async (args: Record<string, unknown>, ctx: Context): Promise<string> => {
    const marks = startTrace()
    let text: string
    try {
      text = render(await caller.call(spec.name, args, ctx, ctx.abort, marks))
    } catch (e) {
      text = `Error: ${(e as Error).message}`
    }
    if (marks) {
      marks.returned = now()
      writeTrace(marks)
    }
    return text
  }
}

/** The tools as OpenCode wants them: `pocketbrain_<name>` → definition. */
export function makeTools(caller: Caller): Record<string, ToolDefinition> {
  return Object.fromEntries(
    SPECS.map((spec) => [
      `${TOOL_PREFIX}${spec.name}`,
      tool<ToolDefinition["args"]>({ description: spec.description, args: spec.args, execute: execute(caller, spec) }),
    ]),
  )
}
