// IPC with the PocketBrain bridge (protocol in ./contract.ts).
//
// First the fast way: a connection to the bridge's socket in the IPC
// folder (kept open between calls), the request as one JSON line, its
// response as one line back. If the socket is missing, refuses, or closes
// without an answer (the bridge is down, stopping, or cannot act now), the same request goes the durable
// way, through the folder: a request is written atomically (temp file + rename) into <ipc>/requests/;
// the bridge acts on it at most once and writes <ipc>/responses/<id>.json,
// which we wait for: woken by a watch on the responses folder, with a coarse
// timer that looks anyway (a watch event can be missed, or the folder cannot
// be watched at all). If the bridge does not answer in time, the request
// stays queued and the bridge carries it out when it is back.
import { randomBytes } from "node:crypto"
import { type FSWatcher, mkdirSync, readFileSync, renameSync, rmSync, watch, writeFileSync } from "node:fs"
import { createConnection, type Socket } from "node:net"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { LIMITS, PROTOCOL_VERSION, SOCKET_NAME, type ToolName } from "./contract.ts"
import { type Marks, now } from "./trace.ts"

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
  call(tool: ToolName, args: Record<string, unknown>, ctx: CallContext, abort?: AbortSignal, marks?: Marks): Promise<Outcome>
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

  async call(tool: ToolName, args: Record<string, unknown>, ctx: CallContext, abort?: AbortSignal, marks?: Marks): Promise<Outcome> {
    if (!this.dir) throw new Error("PocketBrain is not configured (no pocketbrain.json beside the plugin)")
    const id = newRequestId()
    if (marks) {
      marks.id = id
      marks.call = ctx.callID ?? ""
    }
    const body = JSON.stringify(buildRequest(id, tool, args, ctx))
    const size = Buffer.byteLength(body)
    if (size > LIMITS.maxRequestBytes) {
      throw new Error(`the request is ${size} bytes; PocketBrain takes at most ${LIMITS.maxRequestBytes}. Make it shorter.`)
    }
    const started = Date.now()
    const fast = await viaSocket(join(this.dir, SOCKET_NAME), body, id, Math.min(this.timeoutMs, SOCKET_WAIT_MS), abort, marks)
    if (fast) return { kind: "response", response: fast }
    // The file work is synchronous on purpose: a request is at most a few
    // KB on a local disk, so each call is a few microseconds, while each
    // async form waits for the runtime's thread pool and then for its turn
    // on OpenCode's busy event loop.
    const requests = join(this.dir, "requests")
    mkdirSync(requests, { recursive: true })
    const tmp = join(requests, `.${id}.tmp`)
    // Watched before the request exists, so no answer can come unseen.
    const responses = join(this.dir, "responses")
    mkdirSync(responses, { recursive: true })
    const waiter = new ResponseWaiter(responses, abort)
    try {
      writeFileSync(tmp, body)
      renameSync(tmp, join(requests, `${id}.json`))
      while (!abort?.aborted) {
        const response = takeResponse(join(responses, `${id}.json`))
        if (response) return { kind: "response", response }
        const left = this.timeoutMs - (Date.now() - started)
        if (left <= 0) break
        await waiter.next(Math.min(left, waiter.safetyMs(Date.now() - started)))
      }
      return { kind: "timeout", id, waitedMs: Date.now() - started }
    } finally {
      waiter.close()
    }
  }
}

/**
 * How long the socket may take to answer before the request goes through
 * the folder as well (the bridge answers a request that came both ways
 * once, from its ledger).
 */
const SOCKET_WAIT_MS = 2000

/**
 * A connection to the bridge's socket, kept between calls: connecting
 * costs a turn of OpenCode's event loop, which on a busy machine is most
 * of a call's time (docs/BENCHMARKS.md). One call at a time uses it.
 */
type Link = {
  socket: Socket
  /** Bytes after the last whole line. */
  buffered: string
  dead: boolean
  /** The call using it: a whole line came, or the link closed. */
  onLine?: ((line: string) => void) | undefined
  onClose?: (() => void) | undefined
}

/** Idle links per socket path, most recently used last. */
const idle = new Map<string, Link[]>()
/** Idle links kept per socket path; more calls at once open more, closed after use. */
const MAX_IDLE = 4

function open(path: string): Link {
  const socket = createConnection(path)
  const link: Link = { socket, buffered: "", dead: false }
  socket.setEncoding("utf8")
  socket.on("data", (chunk: string) => {
    link.buffered += chunk
    for (let end = link.buffered.indexOf("\n"); end >= 0; end = link.buffered.indexOf("\n")) {
      const line = link.buffered.slice(0, end)
      link.buffered = link.buffered.slice(end + 1)
      link.onLine?.(line)
    }
  })
  const gone = () => {
    link.dead = true
    const list = idle.get(path)
    if (list?.includes(link))
      idle.set(
        path,
        list.filter((l) => l !== link),
      )
    link.onClose?.()
  }
  socket.on("error", gone)
  socket.on("close", gone)
  return link
}

function takeIdle(path: string): Link | undefined {
  const list = idle.get(path)
  for (let link = list?.pop(); link; link = list?.pop()) {
    if (!link.dead) return link
  }
  return undefined
}

function release(path: string, link: Link): void {
  const list = idle.get(path) ?? []
  if (link.dead || list.length >= MAX_IDLE) {
    link.socket.destroy()
    return
  }
  // An idle link does not keep the process alive.
  link.socket.unref()
  list.push(link)
  idle.set(path, list)
}

/** Closes the idle links (tests; a plugin never needs to). */
export function closeIdleLinks(): void {
  for (const list of idle.values()) for (const link of list) link.socket.destroy()
  idle.clear()
}

/**
 * Sends `body` (request `id`) on the bridge's socket at `path` and resolves
 * with its answer; `undefined` when there is none (no socket, refused,
 * closed without an answer, aborted, or `waitMs` passed). A kept link
 * that turns out closed (the bridge restarted since) is replaced by a
 * fresh one once; the request id makes a repeat harmless (the bridge's
 * ledger answers it once). `marks` gets the times of connecting, writing
 * and reading the answer.
 */
export async function viaSocket(
  path: string,
  body: string,
  id: string,
  waitMs: number,
  abort?: AbortSignal,
  marks?: Marks,
): Promise<Response | undefined> {
  const deadline = Date.now() + waitMs
  const kept = takeIdle(path)
  if (kept) {
    if (marks) marks.reused = 1
    const answer = await exchange(path, kept, body, id, waitMs, abort, marks)
    if (answer !== "closed") return answer
  }
  const left = deadline - Date.now()
  if (left <= 0 || abort?.aborted) return undefined
  const answer = await exchange(path, open(path), body, id, left, abort, marks)
  return answer === "closed" ? undefined : answer
}

/** One request on `link`: its answer, `undefined`, or "closed" when the link closed unanswered. */
function exchange(
  path: string,
  link: Link,
  body: string,
  id: string,
  waitMs: number,
  abort?: AbortSignal,
  marks?: Marks,
): Promise<Response | undefined | "closed"> {
  return new Promise((resolve) => {
    let settled = false
    const finish = (answer: Response | undefined | "closed", keep: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      abort?.removeEventListener("abort", onAbort)
      link.onLine = undefined
      link.onClose = undefined
      if (keep) release(path, link)
      else link.socket.destroy()
      resolve(answer)
    }
    // Given up: the link is closed, so a late answer is never read as the next call's.
    const onAbort = () => finish(undefined, false)
    const timer = setTimeout(onAbort, waitMs)
    if (abort?.aborted || link.dead) return finish(link.dead ? "closed" : undefined, false)
    abort?.addEventListener("abort", onAbort, { once: true })
    link.onClose = () => finish("closed", false)
    link.onLine = (line) => {
      if (marks) marks.answered = now()
      try {
        const response = JSON.parse(line) as Response
        if (response.id === id) return finish(response, true)
      } catch {
        // Not an answer: the link is not trusted further.
      }
      finish(undefined, false)
    }
    link.socket.ref()
    if (marks) {
      if (link.socket.connecting) link.socket.once("connect", () => (marks.connected = now()))
      else marks.connected = now()
    }
    link.socket.write(`${body}\n`, () => {
      if (marks) marks.written = now()
    })
  })
}

/** Reads and removes a response file; `undefined` while it is not there (or mid-rename). */
function takeResponse(path: string): Response | undefined {
  try {
    const response = JSON.parse(readFileSync(path, "utf8")) as Response
    rmSync(path, { force: true })
    return response
  } catch {
    return undefined
  }
}

/**
 * Wakes a waiting call when its response file may have appeared: on any
 * watch event in the responses folder, on abort, or when a timer runs out.
 * The timer is the safety net for a missed event (or a folder that cannot
 * be watched).
 */
class ResponseWaiter {
  private watcher: FSWatcher | undefined
  private wake: (() => void) | undefined
  private pending = false

  constructor(dir: string, abort?: AbortSignal) {
    try {
      // Any event in the folder wakes the call for one cheap look: runtimes
      // differ in which name (if any) they report for a rename.
      this.watcher = watch(dir, () => this.signal())
      this.watcher.on("error", () => {
        this.watcher?.close()
        this.watcher = undefined
        this.signal()
      })
    } catch {
      this.watcher = undefined
    }
    abort?.addEventListener("abort", () => this.signal(), { once: true })
  }

  /**
   * How long to wait for an event before looking anyway, `elapsed` ms into
   * the wait: as tight as without a watch while an answer is expected (the
   * watch has been seen not to fire inside OpenCode's runtime, so it may
   * only ever make a call faster, never slower), coarse once the wait drags on.
   */
  safetyMs(elapsed: number): number {
    // Most answers come within a few ms: a look is one failed open (µs).
    if (elapsed < 50) return 1
    return elapsed < 2000 ? 4 : 250
  }

  private signal(): void {
    this.pending = true
    this.wake?.()
  }

  /** Resolves on the next wake-up, or after `ms`. */
  next(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false
      return Promise.resolve()
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.wake = undefined
        this.pending = false
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.wake = done
    })
  }

  close(): void {
    this.watcher?.close()
    this.watcher = undefined
    this.wake = undefined
  }
}
