// Writes fixtures/contract.json from pocketbrain/contract.ts and the tools'
// zod schemas (npm run contract).
// The plugin's tests fail while the file is stale; the bridge's tests check
// their own constants against it.
import { writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { contractJson } from "../pocketbrain/contract.ts"
import { argsContract } from "../pocketbrain/tools.ts"

const path = fileURLToPath(new URL("../fixtures/contract.json", import.meta.url))
writeFileSync(path, `${JSON.stringify({ ...contractJson(), args: argsContract() }, null, 2)}\n`)
console.log(`wrote ${path}`)
