import { chatArg, defineTool } from "../spec.ts"

export const spec = defineTool({
  name: "list_tasks",
  description: "List scheduled tasks of this chat (from the main chat: all chats, or the one given) with status and next run.",
  args: { chat: chatArg },
})
