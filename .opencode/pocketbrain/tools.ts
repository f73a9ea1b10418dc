// The agent's PocketBrain tools. Each takes the IPC client it calls through;
// the bridge decides what is allowed (by the calling session, never by
// arguments) and writes the text the model sees.
import { tool } from "@opencode-ai/plugin"
import type { CallContext, IpcClient, Outcome, ToolName } from "./ipc"

const z = tool.schema
const MAX_RESULT = 4000

function render(outcome: Outcome): string {
  if (outcome.kind === "timeout") {
    return (
      `PocketBrain did not answer within ${Math.round(outcome.waitedMs / 1000)} s (request ${outcome.id}). ` +
      `The request is queued and will be carried out when PocketBrain is back; do not repeat it.`
    )
  }
  const r = outcome.response
  const text = r.ok ? r.result.text : `Error (${r.error.code}): ${r.error.message}`
  return text.length > MAX_RESULT ? text.slice(0, MAX_RESULT) + "\n[truncated]" : text
}

function run(ipc: IpcClient, name: ToolName) {
  return async (args: Record<string, unknown>, ctx: CallContext & { abort?: AbortSignal }) => {
    try {
      return render(await ipc.call(name, args, ctx, ctx.abort))
    } catch (e) {
      return `Error: ${(e as Error).message}`
    }
  }
}

const chatArg = z
  .string()
  .optional()
  .describe("Only from the main chat: the JID of another registered chat to act on. Omit to use the current chat.")

export function makeTools(ipc: IpcClient) {
  return {
    pocketbrain_send_message: tool({
      description:
        "Send a WhatsApp message to the current chat right now, before your final answer (for progress updates " +
        "on long tasks). Your final answer is sent automatically; do not repeat it here.",
      args: {
        text: z.string().min(1).max(60000).describe("The message text. Markdown is allowed."),
        chat: chatArg,
      },
      execute: run(ipc, "send_message"),
    }),
    pocketbrain_schedule_task: tool({
      description:
        "Schedule a task: a prompt that runs later as if sent in this chat, with its answer delivered to the chat. " +
        "Returns the task id and its next run time in the chat's time zone.",
      args: {
        prompt: z.string().min(1).max(20000).describe("What to do when the task runs, written as an instruction to yourself."),
        schedule_type: z.enum(["cron", "interval", "once"]).describe("cron: five-field cron; interval: repeat every duration; once: a single time."),
        schedule_value: z
          .string()
          .describe(
            "cron: '0 9 * * 1-5' (weekdays at 9:00, chat time zone); interval: '90s', '5m', '2h', '1d' (bare number = ms); " +
              "once: ISO 8601 local time '2026-12-24T18:00' or with offset '2026-12-24T18:00+01:00'.",
          ),
        context_mode: z
          .enum(["group", "isolated"])
          .describe("group: runs in this chat's conversation and sees its history; isolated: a fresh session each run."),
        chat: chatArg,
      },
      execute: run(ipc, "schedule_task"),
    }),
    pocketbrain_list_tasks: tool({
      description: "List scheduled tasks of this chat (from the main chat: all chats, or the one given) with status and next run.",
      args: { chat: chatArg },
      execute: run(ipc, "list_tasks"),
    }),
    pocketbrain_pause_task: tool({
      description: "Pause a scheduled task; it keeps its settings until resumed.",
      args: { task_id: z.string().describe("The task id, as returned by pocketbrain_schedule_task or pocketbrain_list_tasks.") },
      execute: run(ipc, "pause_task"),
    }),
    pocketbrain_resume_task: tool({
      description: "Resume a paused task; its next run is computed from now.",
      args: { task_id: z.string().describe("The task id.") },
      execute: run(ipc, "resume_task"),
    }),
    pocketbrain_cancel_task: tool({
      description: "Cancel a scheduled task for good.",
      args: { task_id: z.string().describe("The task id.") },
      execute: run(ipc, "cancel_task"),
    }),
  }
}
