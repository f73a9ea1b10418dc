import { LIMITS } from "../contract.ts"
import { chatArg, defineTool, z } from "../spec.ts"

export const spec = defineTool({
  name: "schedule_task",
  description:
    "Schedule a task: a prompt that runs later as if sent in this chat, with its answer delivered to the chat. " +
    "Returns the task id and its next run time in the chat's time zone.",
  args: {
    prompt: z
      .string()
      .min(1)
      .max(LIMITS.scheduleTaskPromptChars)
      .describe("What to do when the task runs, written as an instruction to yourself."),
    schedule_type: z
      .enum(["cron", "interval", "once"])
      .describe("cron: five-field cron; interval: repeat every duration; once: a single time."),
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
})
