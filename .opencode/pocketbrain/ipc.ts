// File IPC with the PocketBrain bridge (protocol version 1).
//
// A request is written atomically (temp file + rename) into <ipc>/requests/;
// the bridge acts on it at most once and writes <ipc>/responses/<id>.json,
// which we wait for. If the bridge does not answer in time, the request stays
// queued and the bridge carries it out when it is back.
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { randomBytes } from "node:crypto"

export const PROTOCOL_VERSION = 1

export type ToolName =
  | "send_message"
  | "schedule_task"
  | "list_tasks"
  | "pause_task"
  | "resume_task"
  | "cancel_task"

export type CallContext = { sessionID: string; messageID: string; callID?: string; agent?: string }

export type Response =
  | { version: number; id: string; ok: true; result: { text: string; [k: string]: unknown } }
  | { version: number; id: string; ok: false; error: { code: string; message: string } }

export type Outcome = { kind: "response"; response: Response } | { kind: "timeout"; id: string; waitedMs: number }

type Config = { ipc_dir: string; timeout_ms?: number }

export function newRequestId(): string {
  return `req_${Date.now().toString(36)}_${randomBytes(8).toString("hex")}`
}

export class IpcClient {
  constructor(
    readonly dir: string,
    readonly timeoutMs: number,
  ) {}

  /** Reads ../pocketbrain.json (written by the bridge beside this folder); PB_IPC_DIR overrides. */
  static fromConfig(): IpcClient {
    const path = fileURLToPath(new URL("../pocketbrain.json", import.meta.url))
    let cfg: Config = { ipc_dir: "" }
    try {
      cfg = JSON.parse(readFileSync(path, "utf8"))
    } catch {
      // Reported on first use: the tool tells the model the bridge is not set up.
    }
    const dir = process.env.PB_IPC_DIR || cfg.ipc_dir
    const timeout = Number(process.env.PB_IPC_TIMEOUT_MS || cfg.timeout_ms || 30000)
    return new IpcClient(dir, timeout)
  }

  async call(tool: ToolName, args: Record<string, unknown>, ctx: CallContext, abort?: AbortSignal): Promise<Outcome> {
    if (!this.dir) throw new Error("PocketBrain is not configured (no pocketbrain.json beside the plugin)")
    const id = newRequestId()
    const request = {
      version: PROTOCOL_VERSION,
      id,
      tool,
      args,
      context: { session_id: ctx.sessionID, message_id: ctx.messageID, call_id: ctx.callID ?? null, agent: ctx.agent ?? null },
      created_at: new Date().toISOString(),
    }
    const requests = join(this.dir, "requests")
    await mkdir(requests, { recursive: true })
    const tmp = join(requests, `.${id}.tmp`)
    await writeFile(tmp, JSON.stringify(request))
    await rename(tmp, join(requests, `${id}.json`))

    const responsePath = join(this.dir, "responses", `${id}.json`)
    const started = Date.now()
    let pause = 2
    while (Date.now() - started < this.timeoutMs) {
      if (abort?.aborted) break
      try {
        const response = JSON.parse(await readFile(responsePath, "utf8")) as Response
        await rm(responsePath, { force: true })
        return { kind: "response", response }
      } catch {
        // Not there yet (or mid-rename): wait a little longer each time.
      }
      await new Promise((r) => setTimeout(r, pause))
      // Tight while an answer is expected (the bridge answers in tens of ms),
      // slower once the wait drags on (the bridge may be down).
      pause = Math.min(pause * 2, Date.now() - started < 2000 ? 4 : 50)
    }
    return { kind: "timeout", id, waitedMs: Date.now() - started }
  }
}
