// What the model sees: arguments it may give, and the text it gets back.
import assert from "node:assert/strict"
import { test } from "node:test"
import { LIMITS, MAX_RESULT_CHARS } from "../pocketbrain/contract.ts"
import type { Caller, Outcome, Response } from "../pocketbrain/ipc.ts"
import { z } from "../pocketbrain/spec.ts"
import { makeTools, render, SPECS } from "../pocketbrain/tools.ts"
import { readFixture } from "./fixtures.ts"

const schema = (name: string) => {
  const spec = SPECS.find((s) => s.name === name)
  assert.ok(spec)
  return z.object(spec.args)
}

test("responses render as the text the model reads", () => {
  const ok = readFixture<Response>("response-ok.json")
  assert.equal(render({ kind: "response", response: ok }), "Sent to this chat.")
  const scheduled = readFixture<Response>("response-ok-schedule_task.json")
  assert.match(render({ kind: "response", response: scheduled }), /^Scheduled task task-0a1b2c3d /)
  const error = readFixture<Response>("response-error.json")
  assert.equal(render({ kind: "response", response: error }), "Error (unauthorized): only the main chat may address another chat")
})

test("long results are cut for the model", () => {
  const long: Outcome = {
    kind: "response",
    response: { version: 1, id: "req_x", ok: true, result: { text: "x".repeat(MAX_RESULT_CHARS + 1) } },
  }
  assert.equal(render(long), `${"x".repeat(MAX_RESULT_CHARS)}\n[truncated]`)
})

test("a timeout tells the model the request is queued", () => {
  const text = render({ kind: "timeout", id: "req_abc", waitedMs: 30000 })
  assert.match(text, /within 30 s \(request req_abc\)/)
  assert.match(text, /do not repeat it/)
})

test("the schemas hold the contract's limits", () => {
  const send = schema("send_message")
  assert.ok(send.safeParse({ text: "x".repeat(LIMITS.sendMessageTextChars) }).success)
  assert.ok(!send.safeParse({ text: "x".repeat(LIMITS.sendMessageTextChars + 1) }).success)
  assert.ok(!send.safeParse({ text: "" }).success)
  const task = { schedule_type: "once", schedule_value: "2026-12-24T18:00", context_mode: "group" }
  const schedule = schema("schedule_task")
  assert.ok(schedule.safeParse({ ...task, prompt: "x".repeat(LIMITS.scheduleTaskPromptChars) }).success)
  assert.ok(!schedule.safeParse({ ...task, prompt: "x".repeat(LIMITS.scheduleTaskPromptChars + 1) }).success)
  assert.ok(!schedule.safeParse({ ...task, prompt: "p", schedule_type: "weekly" }).success)
  const file = schema("send_file")
  assert.ok(file.safeParse({ path: "reports/a.pdf" }).success)
  assert.ok(file.safeParse({ path: "a.png", caption: "x".repeat(LIMITS.sendFileCaptionChars) }).success)
  assert.ok(!file.safeParse({ path: "a.png", caption: "x".repeat(LIMITS.sendFileCaptionChars + 1) }).success)
  assert.ok(!file.safeParse({ path: "" }).success)
  assert.ok(!file.safeParse({ path: "x".repeat(LIMITS.sendFilePathChars + 1) }).success)
})

test("a tool forwards its call with OpenCode's context and returns the rendered answer", async () => {
  const calls: unknown[] = []
  const caller: Caller = {
    async call(tool, args, ctx) {
      calls.push({ tool, args, ctx: { ...ctx } })
      return { kind: "response", response: { version: 1, id: "req_1", ok: true, result: { text: "done" } } }
    },
  }
  const tools = makeTools(caller)
  const ctx = { sessionID: "ses_1", messageID: "msg_1", callID: "call_1", agent: "build" }
  const tool = tools.pocketbrain_pause_task
  assert.ok(tool)
  // biome-ignore lint/suspicious/noExplicitAny: OpenCode's full ToolContext is not needed here
  const text = await tool.execute({ task_id: "task-1" }, ctx as any)
  assert.equal(text, "done")
  assert.deepEqual(calls, [{ tool: "pause_task", args: { task_id: "task-1" }, ctx }])
})

test("a failing call becomes an error text, not an exception", async () => {
  const tools = makeTools({
    call: async () => {
      throw new Error("PocketBrain is not configured")
    },
  })
  // biome-ignore lint/suspicious/noExplicitAny: as above
  const text = await tools.pocketbrain_list_tasks?.execute({}, { sessionID: "s", messageID: "m" } as any)
  assert.equal(text, "Error: PocketBrain is not configured")
})
