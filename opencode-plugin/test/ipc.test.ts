// The request and response files, against the fixtures the bridge's tests read too.
import assert from "node:assert/strict"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { after, test } from "node:test"
import { LIMITS, PROTOCOL_VERSION, SOCKET_NAME, TOOL_NAMES, type ToolName } from "../pocketbrain/contract.ts"
import {
  buildRequest,
  type CallContext,
  closeIdleLinks,
  IpcClient,
  newRequestId,
  type Request,
  type Response,
  validRequestId,
} from "../pocketbrain/ipc.ts"
import { z } from "../pocketbrain/spec.ts"
import { SPECS } from "../pocketbrain/tools.ts"
import { fixtureNames, readFixture } from "./fixtures.ts"

const scratch = mkdtempSync(join(tmpdir(), "pb-plugin-test-"))
after(() => rmSync(scratch, { recursive: true, force: true }))
let dirs = 0
const ipcDir = () => join(scratch, `ipc${dirs++}`)

function contextOf(r: Request): CallContext {
  return {
    sessionID: r.context.session_id,
    messageID: r.context.message_id,
    callID: r.context.call_id ?? undefined,
    agent: r.context.agent ?? undefined,
  }
}

/** Answers the first request that appears in `dir` with `answer(request)`, as the bridge does. */
async function fakeBridge(dir: string, answer: (r: Request) => Response): Promise<Request> {
  const requests = join(dir, "requests")
  for (let i = 0; i < 500; i++) {
    const names = (() => {
      try {
        return readdirSync(requests).filter((n) => !n.startsWith("."))
      } catch {
        return []
      }
    })()
    const name = names[0]
    if (name) {
      const request = JSON.parse(readFileSync(join(requests, name), "utf8")) as Request
      const responses = join(dir, "responses")
      writeFileSync(join(scratch, "response.tmp"), JSON.stringify(answer(request)))
      rmSync(responses, { recursive: true, force: true })
      await import("node:fs/promises").then((fs) => fs.mkdir(responses, { recursive: true }))
      renameSync(join(scratch, "response.tmp"), join(responses, `${request.id}.json`))
      rmSync(join(requests, name))
      return request
    }
    await new Promise((r) => setTimeout(r, 5))
  }
  throw new Error("no request appeared")
}

test("there is a request fixture for every tool", () => {
  assert.deepEqual(fixtureNames("request-"), TOOL_NAMES.map((n) => `request-${n}.json`).sort())
})

for (const name of fixtureNames("request-")) {
  test(`${name}: the plugin writes requests byte for byte in this shape`, () => {
    const fixture = readFixture<Request>(name)
    assert.equal(fixture.version, PROTOCOL_VERSION)
    assert.ok(validRequestId(fixture.id), fixture.id)
    assert.ok(TOOL_NAMES.includes(fixture.tool), fixture.tool)
    const built = buildRequest(fixture.id, fixture.tool, fixture.args, contextOf(fixture), new Date(fixture.created_at))
    assert.equal(JSON.stringify(built), readFileSync(new URL(`../fixtures/ipc/${name}`, import.meta.url), "utf8").trim())
  })

  test(`${name}: its arguments pass the tool's schema, with no unknown key`, () => {
    const fixture = readFixture<Request>(name)
    const spec = SPECS.find((s) => s.name === fixture.tool)
    assert.ok(spec)
    z.object(spec.args).strict().parse(fixture.args)
  })
}

test("a call writes the request and returns the bridge's response", async () => {
  const fixture = readFixture<Request>("request-send_message.json")
  const reply = readFixture<Response>("response-ok.json")
  const dir = ipcDir()
  const client = new IpcClient(dir, 5000)
  const [outcome, seen] = await Promise.all([
    client.call(fixture.tool, fixture.args, contextOf(fixture)),
    fakeBridge(dir, (r) => ({ ...reply, id: r.id })),
  ])
  assert.ok(validRequestId(seen.id))
  assert.deepEqual({ ...seen, id: fixture.id, created_at: fixture.created_at }, fixture)
  assert.deepEqual(outcome, { kind: "response", response: { ...reply, id: seen.id } })
  assert.deepEqual(readdirSync(join(dir, "responses")), [], "the response is taken")
})

/** A bridge socket in `dir` that hands each request line to `onRequest`. */
async function fakeSocket(
  dir: string,
  onRequest: (r: Request, answer: (resp: Response) => void, close: () => void) => void,
): Promise<Server> {
  mkdirSync(dir, { recursive: true })
  const server = createServer((conn) => {
    let buf = ""
    conn.setEncoding("utf8")
    conn.on("data", (chunk: string) => {
      buf += chunk
      const end = buf.indexOf("\n")
      if (end < 0) return
      onRequest(
        JSON.parse(buf.slice(0, end)) as Request,
        (resp) => conn.end(`${JSON.stringify(resp)}\n`),
        () => conn.destroy(),
      )
    })
  })
  await new Promise<void>((resolve) => server.listen(join(dir, SOCKET_NAME), resolve))
  return server
}

test("a call goes by the bridge's socket when it listens, and nothing is left in the folder", async () => {
  const fixture = readFixture<Request>("request-send_message.json")
  const reply = readFixture<Response>("response-ok.json")
  const dir = ipcDir()
  const seen: Request[] = []
  const server = await fakeSocket(dir, (r, answer) => {
    seen.push(r)
    answer({ ...reply, id: r.id })
  })
  try {
    const outcome = await new IpcClient(dir, 5000).call(fixture.tool, fixture.args, contextOf(fixture))
    assert.equal(seen.length, 1)
    const [request] = seen
    assert.ok(request)
    assert.deepEqual({ ...request, id: fixture.id, created_at: fixture.created_at }, fixture)
    assert.deepEqual(outcome, { kind: "response", response: { ...reply, id: request.id } })
    assert.throws(() => readdirSync(join(dir, "requests")), "no request file")
  } finally {
    server.close()
  }
})

test("a socket that closes without an answer: the same request goes through the folder", async () => {
  const reply = readFixture<Response>("response-ok.json")
  const dir = ipcDir()
  const bySocket: string[] = []
  const server = await fakeSocket(dir, (r, _answer, close) => {
    bySocket.push(r.id)
    close()
  })
  try {
    const [outcome, byFile] = await Promise.all([
      new IpcClient(dir, 5000).call("list_tasks", {}, { sessionID: "ses_a", messageID: "msg_a", callID: "c1" }),
      fakeBridge(dir, (r) => ({ ...reply, id: r.id })),
    ])
    assert.deepEqual(bySocket, [byFile.id], "one request, tried by the socket first")
    assert.deepEqual(outcome, { kind: "response", response: { ...reply, id: byFile.id } })
  } finally {
    server.close()
  }
})

test("calls keep one connection open; one the bridge closed meanwhile is replaced, not given up for the folder", async () => {
  const reply = readFixture<Response>("response-ok.json")
  const dir = ipcDir()
  const conns: Socket[] = []
  const answered: string[] = []
  mkdirSync(dir, { recursive: true })
  // Like the bridge: each line answered on the same connection, which stays open.
  const server = createServer((conn) => {
    conns.push(conn)
    let buf = ""
    conn.setEncoding("utf8")
    conn.on("data", (chunk: string) => {
      buf += chunk
      for (let end = buf.indexOf("\n"); end >= 0; end = buf.indexOf("\n")) {
        const r = JSON.parse(buf.slice(0, end)) as Request
        buf = buf.slice(end + 1)
        answered.push(r.id)
        conn.write(`${JSON.stringify({ ...reply, id: r.id })}\n`)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(join(dir, SOCKET_NAME), resolve))
  const client = new IpcClient(dir, 5000)
  const call = (n: number) => client.call("list_tasks", {}, { sessionID: "ses_a", messageID: "msg_a", callID: `c${n}` })
  try {
    const first = await call(1)
    const second = await call(2)
    assert.equal(conns.length, 1, "the second call used the first call's connection")
    // The bridge closes it (idle, or restarted); the next call connects again.
    for (const c of conns) c.destroy()
    const third = await call(3)
    assert.equal(conns.length, 2)
    assert.deepEqual(
      [first, second, third].map((o) => (o.kind === "response" ? o.response.id : "timeout")),
      answered.slice(-3),
      "each call got its own answer by the socket",
    )
    assert.throws(() => readdirSync(join(dir, "requests")), "nothing went through the folder")
  } finally {
    closeIdleLinks()
    server.close()
  }
})

test("an answer on the socket for another request is not taken", async () => {
  const reply = readFixture<Response>("response-ok.json")
  const dir = ipcDir()
  const server = await fakeSocket(dir, (_r, answer) => answer({ ...reply, id: "req_someone_else" }))
  try {
    const [outcome, byFile] = await Promise.all([
      new IpcClient(dir, 5000).call("list_tasks", {}, { sessionID: "ses_a", messageID: "msg_a" }),
      fakeBridge(dir, (r) => ({ ...reply, id: r.id })),
    ])
    assert.deepEqual(outcome, { kind: "response", response: { ...reply, id: byFile.id } })
  } finally {
    server.close()
  }
})

test("without an answer in time the request stays queued", async () => {
  const dir = ipcDir()
  const outcome = await new IpcClient(dir, 40).call("list_tasks", {}, { sessionID: "ses_a", messageID: "msg_a" })
  assert.equal(outcome.kind, "timeout")
  assert.ok(outcome.kind === "timeout" && outcome.waitedMs >= 40)
  assert.deepEqual(readdirSync(join(dir, "requests")), [`${outcome.id}.json`])
})

test("an aborted call stops waiting", async () => {
  const started = Date.now()
  const outcome = await new IpcClient(ipcDir(), 10000).call("list_tasks", {}, { sessionID: "s", messageID: "m" }, AbortSignal.abort())
  assert.equal(outcome.kind, "timeout")
  assert.ok(Date.now() - started < 2000)
})

test("a request over the size limit is refused before anything is written", async () => {
  const dir = ipcDir()
  const text = "\u0001".repeat(LIMITS.maxRequestBytes / 6 + 1) // JSON writes each as \u0001
  await assert.rejects(new IpcClient(dir, 1000).call("send_message", { text }, { sessionID: "s", messageID: "m" }), /takes at most 262144/)
  assert.throws(() => readdirSync(join(dir, "requests")))
})

test("the longest text and prompt the schemas allow fit in a request", () => {
  const longest = (tool: ToolName, args: Record<string, unknown>) =>
    Buffer.byteLength(JSON.stringify(buildRequest(newRequestId(), tool, args, { sessionID: "s", messageID: "m" })))
  assert.ok(longest("send_message", { text: "€".repeat(LIMITS.sendMessageTextChars) }) <= LIMITS.maxRequestBytes)
  assert.ok(longest("schedule_task", { prompt: "€".repeat(LIMITS.scheduleTaskPromptChars) }) <= LIMITS.maxRequestBytes)
})

test("request ids are safe file names within the bridge's limit", () => {
  for (let i = 0; i < 100; i++) assert.ok(validRequestId(newRequestId()))
  for (const bad of ["", "../etc/passwd", "req_a/b", "x_1", `req_${"a".repeat(LIMITS.maxRequestIdChars)}`]) {
    assert.ok(!validRequestId(bad), bad)
  }
})

test("no configuration: the call fails with a message the model can relay", async () => {
  const client = IpcClient.fromConfig(join(scratch, "missing.json"))
  await assert.rejects(client.call("list_tasks", {}, { sessionID: "s", messageID: "m" }), /not configured/)
})

test("pocketbrain.json sets the folder and timeout", () => {
  const path = join(scratch, "pocketbrain.json")
  writeFileSync(path, JSON.stringify({ ipc_dir: "/data/ipc", timeout_ms: 1234 }))
  const client = IpcClient.fromConfig(path)
  assert.deepEqual([client.dir, client.timeoutMs], ["/data/ipc", 1234])
})

/** Waits (with a deadline) until a request file appears in `dir`, and returns it. */
async function requestIn(dir: string): Promise<Request> {
  const requests = join(dir, "requests")
  const deadline = Date.now() + 10000
  while (Date.now() < deadline) {
    try {
      const name = readdirSync(requests).find((n) => !n.startsWith("."))
      if (name) return JSON.parse(readFileSync(join(requests, name), "utf8")) as Request
    } catch {
      // not created yet
    }
    await new Promise((r) => setTimeout(r, 5))
  }
  throw new Error("no request appeared")
}

test("a response renamed into the watched folder is taken; another call's response is left alone", async () => {
  const reply = readFixture<Response>("response-ok.json")
  const dir = ipcDir()
  const client = new IpcClient(dir, 10000)
  const call = client.call("list_tasks", {}, { sessionID: "ses_a", messageID: "msg_a", callID: "c1" })
  const request = await requestIn(dir)
  const responses = join(dir, "responses")
  // Someone else's answer first: not ours, stays.
  writeFileSync(join(responses, ".other.tmp"), JSON.stringify({ ...reply, id: "req_other" }))
  renameSync(join(responses, ".other.tmp"), join(responses, "req_other.json"))
  writeFileSync(join(responses, ".tmp"), JSON.stringify({ ...reply, id: request.id }))
  renameSync(join(responses, ".tmp"), join(responses, `${request.id}.json`))
  const outcome = await call
  assert.deepEqual(outcome, { kind: "response", response: { ...reply, id: request.id } })
  assert.deepEqual(readdirSync(responses), ["req_other.json"])
})

test("a response whose watch event was missed (its folder replaced) is found by the safety check", async () => {
  const reply = readFixture<Response>("response-ok.json")
  const dir = ipcDir()
  const call = new IpcClient(dir, 10000).call("list_tasks", {}, { sessionID: "ses_a", messageID: "msg_a", callID: "c1" })
  const request = await requestIn(dir)
  const responses = join(dir, "responses")
  // The watched folder goes away and a new one takes its place: no event reaches the waiter.
  renameSync(responses, join(dir, "old-responses"))
  await import("node:fs/promises").then((fs) => fs.mkdir(responses))
  writeFileSync(join(responses, `${request.id}.json`), JSON.stringify({ ...reply, id: request.id }))
  assert.deepEqual(await call, { kind: "response", response: { ...reply, id: request.id } })
})
