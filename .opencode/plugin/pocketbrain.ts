// Lets OpenCode run from this repository's root load PocketBrain's plugin,
// which is the package in opencode-plugin/. A workspace gets the package's
// own entry instead: the bridge installs opencode-plugin/plugin/ and
// opencode-plugin/pocketbrain/ into <workspace>/.opencode/ (src/ipc/mod.rs).
export { PocketBrain } from "../../opencode-plugin/plugin/pocketbrain.ts"
