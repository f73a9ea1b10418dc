// Timing marks for each tool call, for the benchmark: when PB_PLUGIN_TRACE
// names a file in OpenCode's environment, every call appends one JSON line
// to it (the request id, OpenCode's call id, and wall-clock times in ms
// with a fractional part: `start` when `execute` begins, `connected`,
// `written` and `answered` on the bridge's socket, `returned` when
// `execute` gives its text back). Unset, nothing is recorded.
import { appendFileSync } from "node:fs"

export type Marks = Record<string, number | string>

const FILE = process.env.PB_PLUGIN_TRACE

/** Wall-clock time in ms, to the µs (comparable with the bridge's stage log). */
export function now(): number {
  return performance.timeOrigin + performance.now()
}

/** A fresh set of marks when tracing is on, else `undefined`. */
export function startTrace(): Marks | undefined {
  return FILE ? { start: now() } : undefined
}

/** Appends `marks` as one line; a write that fails is dropped (timing only). */
export function writeTrace(marks: Marks | undefined): void {
  if (!FILE || !marks) return
  try {
    appendFileSync(FILE, `${JSON.stringify(marks)}\n`)
  } catch {
    // A diagnostic: never fail a tool call over it.
  }
}
