// File IPC with the PocketBrain bridge (protocol in ./contract.ts).
//
// A request is written atomically (temp file + rename) into <ipc>/requests/;
// the bridge acts on it at most once and writes <ipc>/responses/<id>.json,
// which we wait for. If the bridge does not answer in time, the request stays
// queued and the bridge carries it out when it is back.
import { randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { LIMITS, PROTOCOL_VERSION, type ToolName } from "./contract.ts"

/** OpenCode's tool context, as far as the bridge needs it. */
export type CallContext = { sessionID: string; messageID: string; callID?: string | undefined; agent?: string | undefined }

/** A request file, as the bridge reads it (src/ipc/protocol.rs `Request`). */
export type Request = {
  version: number
  id: string
  tool: ToolName
  args: Record<string, unknown>
  context: { session_id: string; message_id: string; call_id: string | null; agent: string | null }
  created_at: string
}

/** A response file, as the bridge writes it (src/ipc/protocol.rs `Response`). */
export type Response =
  | { version: number; id: string; ok: true; result: { text: string; [k: string]: unknown } }
  | { version: number; id: string; ok: false; error: { code: string; message: string } }

export type Outcome = { kind: "response"; response: Response } | { kind: "timeout"; id: string; waitedMs: number }

/** What the plugin asks of a client; tests put a fake one in. */
export interface Caller {
  call(tool: ToolName, args: Record<string, unknown>, ctx: CallContext, abort?: AbortSignal): Promise<Outcome>
}

/** The plugin's config file, written by the bridge. */
export type Config = { ipc_dir?: string; timeout_ms?: number; secret_env?: string[] }

/** Where the bridge writes `pocketbrain.json`: the folder above this module's (`.opencode/`). */
export const CONFIG_PATH = fileURLToPath(new URL("../pocketbrain.json", import.meta.url))

/** Reads the plugin's config file; a missing or broken one is empty. */
export function readConfig(path = CONFIG_PATH): Config {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Config
  } catch {
    // Reported on first use: the tool tells the model the bridge is not set up.
    return {}
  }
}

const DEFAULT_TIMEOUT_MS = 30000

export function newRequestId(): string {
  return `req_${Date.now().toString(36)}_${randomBytes(8).toString("hex")}`
}

/** Whether `id` is a request id the bridge accepts (and a safe file name). */
export function validRequestId(id: string): boolean {
  return id.length <= LIMITS.maxRequestIdChars && /^req_[A-Za-z0-9_-]*$/.test(id)
}

export function buildRequest(id: string, tool: ToolName, args: Record<string, unknown>, ctx: CallContext, now = new Date()): Request {
  return {
    version: PROTOCOL_VERSION,
    id,
    tool,
    args,
    context: { session_id: ctx.sessionID, message_id: ctx.messageID, call_id: ctx.callID ?? null, agent: ctx.agent ?? null },
    created_at: now.toISOString(),
  }
}

export class IpcClient implements Caller {
  constructor(
    readonly dir: string,
    readonly timeoutMs: number,
  ) {}

  /**
   * Reads `pocketbrain.json`, which the bridge writes into the folder above
   * this module's (`.opencode/` in the workspace); PB_IPC_DIR and
   * PB_IPC_TIMEOUT_MS override it.
   */
  static fromConfig(path = CONFIG_PATH): IpcClient {
    const cfg = readConfig(path)
    const dir = process.env.PB_IPC_DIR || cfg.ipc_dir || ""
    const timeout = Number(process.env.PB_IPC_TIMEOUT_MS || cfg.timeout_ms || DEFAULT_TIMEOUT_MS)
    return new IpcClient(dir, timeout)
  }

  async call(tool: ToolName, args: Record<string, unknown>, ctx: CallContext, abort?: AbortSignal): Promise<Outcome> {
    if (!this.dir) throw new Error("PocketBrain is not configured (no pocketbrain.json beside the plugin)")
    const id = newRequestId()
    const body = JSON.stringify(buildRequest(id, tool, args, ctx))
    const size = Buffer.byteLength(body)
    if (size > LIMITS.maxRequestBytes) {
      throw new Error(`the request is ${size} bytes; PocketBrain takes at most ${LIMITS.maxRequestBytes}. Make it shorter.`)
    }
    const requests = join(this.dir, "requests")
    await mkdir(requests, { recursive: true })
    const tmp = join(requests, `.${id}.tmp`)
    await writeFile(tmp, body)
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
