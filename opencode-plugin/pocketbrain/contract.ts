// What the plugin and the bridge agree on: protocol version, tool names and
// limits. This is the plugin's one definition; the bridge's is in
// src/ipc/protocol.rs. fixtures/contract.json is written from this module
// (npm run contract), the plugin's tests check it is current, and a Rust test
// checks the bridge's constants against it.

/** Version of the request/response files (`version` field). */
export const PROTOCOL_VERSION = 1

/** The tools, as named in requests (OpenCode sees them as `pocketbrain_<name>`). */
export const TOOL_NAMES = ["send_message", "schedule_task", "list_tasks", "pause_task", "resume_task", "cancel_task", "send_file"] as const

export type ToolName = (typeof TOOL_NAMES)[number]

/** The bridge's socket in the IPC folder (the fast way; the folder is the durable one). */
export const SOCKET_NAME = "bridge.sock"

/** Prefix of every tool's name in OpenCode. */
export const TOOL_PREFIX = "pocketbrain_"

// Text lengths count UTF-16 code units here (zod's .max) and Unicode scalar
// values on the bridge, so whatever the plugin lets through the bridge accepts.
export const LIMITS = {
  /** Largest request file the bridge reads, in bytes (UTF-8 JSON). */
  maxRequestBytes: 256 * 1024,
  /** Longest request id, in characters; ids are `req_` + [A-Za-z0-9_-]. */
  maxRequestIdChars: 80,
  /** send_message: longest `text`, in characters. */
  sendMessageTextChars: 60000,
  /** schedule_task: longest `prompt`, in characters. */
  scheduleTaskPromptChars: 20000,
  /** send_file: longest `path`, in characters. */
  sendFilePathChars: 1024,
  /** send_file: longest `caption`, in characters. */
  sendFileCaptionChars: 4000,
} as const

/** Plugin only: the longest tool result handed to the model, in characters. */
export const MAX_RESULT_CHARS = 4000

/** The shared part, in the shape of fixtures/contract.json. */
export function contractJson() {
  return {
    protocol_version: PROTOCOL_VERSION,
    socket: SOCKET_NAME,
    tools: [...TOOL_NAMES],
    limits: {
      max_request_bytes: LIMITS.maxRequestBytes,
      max_request_id_chars: LIMITS.maxRequestIdChars,
      send_message_text_chars: LIMITS.sendMessageTextChars,
      schedule_task_prompt_chars: LIMITS.scheduleTaskPromptChars,
      send_file_path_chars: LIMITS.sendFilePathChars,
      send_file_caption_chars: LIMITS.sendFileCaptionChars,
    },
  }
}
