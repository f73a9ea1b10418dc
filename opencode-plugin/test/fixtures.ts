// The IPC fixtures shared with the bridge's tests (src/ipc/protocol.rs).
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

export const root = fileURLToPath(new URL("..", import.meta.url))
export const ipcFixtures = fileURLToPath(new URL("../fixtures/ipc/", import.meta.url))

export function fixtureNames(prefix: "request-" | "response-"): string[] {
  return readdirSync(ipcFixtures)
    .filter((n) => n.startsWith(prefix) && n.endsWith(".json"))
    .sort()
}

export function readFixture<T = unknown>(name: string): T {
  return JSON.parse(readFileSync(`${ipcFixtures}${name}`, "utf8")) as T
}

export function readJson<T = unknown>(relative: string): T {
  return JSON.parse(readFileSync(`${root}${relative}`, "utf8")) as T
}
