import { LIMITS } from "../contract.ts"
import { chatArg, defineTool, z } from "../spec.ts"

export const spec = defineTool({
  name: "send_message",
  description:
    "Send a WhatsApp message to the current chat right now, before your final answer (for progress updates " +
    "on long tasks). Your final answer is sent automatically; do not repeat it here.",
  args: {
    text: z.string().min(1).max(LIMITS.sendMessageTextChars).describe("The message text. Markdown is allowed."),
    chat: chatArg,
  },
})
