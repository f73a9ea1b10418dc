import { defineTool, z } from "../spec.ts"

export const spec = defineTool({
  name: "pause_task",
  description: "Pause a scheduled task; it keeps its settings until resumed.",
  args: { task_id: z.string().describe("The task id, as returned by pocketbrain_schedule_task or pocketbrain_list_tasks.") },
})
