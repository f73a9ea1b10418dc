import { defineTool, z } from "../spec.ts"

export const spec = defineTool({
  name: "cancel_task",
  description: "Cancel a scheduled task for good.",
  args: { task_id: z.string().describe("The task id.") },
})
