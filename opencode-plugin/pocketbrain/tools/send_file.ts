import { LIMITS } from "../contract.ts"
import { defineTool, z } from "../spec.ts"

export const spec = defineTool({
  name: "send_file",
  description:
    "Send a file from this chat's folder (your working directory) to the current chat: a photo (JPEG, PNG) goes " +
    "as a photo, audio as audio, MP4 video as video, anything else (PDF, text, spreadsheets, ...) as a document. " +
    "Write or download the file into this folder first. It arrives before your final answer, in the order you send " +
    "things. Files outside this folder, and symlinks, are refused.",
  args: {
    path: z
      .string()
      .min(1)
      .max(LIMITS.sendFilePathChars)
      .describe("The file, relative to this chat's folder (e.g. reports/summary.pdf); an absolute path must lie inside it."),
    caption: z
      .string()
      .max(LIMITS.sendFileCaptionChars)
      .optional()
      .describe("Text shown with the file. Markdown is not rendered in captions."),
  },
})
