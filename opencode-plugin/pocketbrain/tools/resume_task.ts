import { defineTool, z } from "../spec.ts"

export const spec = defineTool({
  name: "resume_task",
  description: "Resume a paused task; its next run is computed from now.",
  args: { task_id: z.string().describe("The task id.") },
})
