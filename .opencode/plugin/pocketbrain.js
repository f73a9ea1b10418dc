// Lets OpenCode run from this repository's root load PocketBrain's plugin:
// the bundle built from the package in opencode-plugin/ (`npm run bundle`),
// which a workspace gets as .opencode/plugin/pocketbrain.js (src/ipc/mod.rs).
export { PocketBrain } from "../../opencode-plugin/bundle/pocketbrain.js"
