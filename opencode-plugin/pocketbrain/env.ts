// Secrets out of the agent's shell: the `shell.env` hook.
//
// OpenCode 1.18.33 calls the hook before each shell command (the bash tool,
// `!` commands, terminals) with an empty `output.env`, then runs the command
// with `{ ...process.env, ...output.env }`. So a variable is removed by
// setting it to `undefined` in `output.env`: the spread keeps the key with
// no value, and the process spawn leaves such a key out of the child's
// environment. (Deleting the key would do nothing: process.env still has it.)

/** Names removed whatever the bridge says: the server's credentials. */
const ALWAYS = new Set(["OPENCODE_SERVER_PASSWORD", "OPENCODE_SERVER_USERNAME"])
/** Names that look like keys. */
const SECRET_SHAPE = /(_API_KEY|_TOKEN|_SECRET|PASSWORD)$/i

/** Whether the agent's shell must not see the variable `name`. */
export function isSecretName(name: string, listed: ReadonlySet<string>): boolean {
  return ALWAYS.has(name) || listed.has(name) || SECRET_SHAPE.test(name)
}

type ShellEnvOutput = { env: Record<string, string> }

/**
 * The `shell.env` hook: every secret name in `source` (OpenCode's own
 * environment) or already in `output.env` is set to `undefined`.
 */
export function hideSecrets(listed: Iterable<string>, source: Record<string, string | undefined> = process.env) {
  const names = new Set(listed)
  return async (_input: unknown, output: ShellEnvOutput): Promise<void> => {
    for (const name of new Set([...Object.keys(source), ...Object.keys(output.env)])) {
      if (isSecretName(name, names)) {
        // See the top of this file: undefined removes it from the spawn.
        output.env[name] = undefined as unknown as string
      }
    }
  }
}
