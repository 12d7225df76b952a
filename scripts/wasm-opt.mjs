// `node scripts/wasm-opt.mjs <file.wasm>...`: wasm-opt -Oz on each file, in place, in one Node
// process (npm's binaryen, end2end/node_modules). The split bundle has a few hundred small chunks;
// the wasm-opt command starts a Node process and compiles binaryen for each file (about 1.5 s),
// this compiles it once. Same passes as `wasm-opt -Oz` (optimize level 2, shrink level 2), with
// the features binaryen reads by default (bulk memory, non-trapping float-to-int and the rest
// rustc's wasm32 output uses); no debug names are written.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const binaryenDir = join(root, "end2end/node_modules/binaryen");

// build.sh asks on every start: answered from package.json, without loading binaryen (0.5 s).
if (process.argv[2] === "--version") {
  const { version } = JSON.parse(readFileSync(join(binaryenDir, "package.json"), "utf8"));
  console.log(`binaryen ${version} (js api, -Oz)`);
  process.exit(0);
}
const { default: binaryen } = await import(join(binaryenDir, "index.js"));
binaryen.setOptimizeLevel(2);
binaryen.setShrinkLevel(2);
binaryen.setDebugInfo(false);
for (const file of process.argv.slice(2)) {
  const module = binaryen.readBinary(readFileSync(file));
  if (!module.validate()) throw new Error(`${file}: not a valid wasm module`);
  module.optimize();
  writeFileSync(file, module.emitBinary());
  module.dispose();
}
