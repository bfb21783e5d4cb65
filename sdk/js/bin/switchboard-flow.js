#!/usr/bin/env node
// `switchboard-flow build flow.ts [-o flow.wasm]`: builds a flow (a module whose default export
// is `defineFlow(...)`) into a component with jco's QuickJS backend (about 2 s, 1.6 MB: a
// fresh instance per step is cheap).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const sdk = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [command, source, ...rest] = process.argv.slice(2);
if (command !== 'build' || !source) {
  console.error('usage: switchboard-flow build FLOW.(ts|js) [-o OUTPUT.wasm]');
  process.exit(2);
}
const outIndex = rest.indexOf('-o');
const output = resolve(outIndex >= 0 ? rest[outIndex + 1] : 'flow.wasm');
const flowPath = resolve(source);
if (!existsSync(flowPath)) {
  console.error(`${source}: no such file (the flow module, such as flow.ts)`);
  process.exit(2);
}
// jco: the SDK's own install (this repository), or the flow project's.
const jco = [sdk, dirname(flowPath), process.cwd()]
  .map((dir) => join(dir, 'node_modules', '.bin', 'jco'))
  .find((path) => existsSync(path));
if (!jco) {
  console.error('jco not found: run npm install in the flow project (it installs @bytecodealliance/jco)');
  process.exit(2);
}
// The component's entry: the flow's default export behind the contract's `handle`.
const work = mkdtempSync(join(tmpdir(), 'switchboard-flow-'));
const entry = join(dirname(flowPath), `.switchboard-entry-${process.pid}.js`);
writeFileSync(entry, [
  `import flow from ${JSON.stringify('./' + basename(flowPath))};`,
  `import { component } from ${JSON.stringify(join(sdk, 'src', 'component.js'))};`,
  'export const handle = component(flow);',
  '',
].join('\n'));
console.error(`building ${output} from ${source} with jco (QuickJS)...`);
const started = Date.now();
const result = spawnSync(jco, [
  'componentize', entry, '--wit', join(sdk, 'wit'), '--world-name', 'flow',
  '--backend', 'qjs', '--backend-qjs-disable-async', '--bundle', '-o', output,
], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', cwd: work });
rmSync(entry, { force: true });
rmSync(work, { recursive: true, force: true });
if (result.status !== 0) {
  console.error(result.stdout, result.stderr);
  console.error(`build failed: does ${source} export default defineFlow({...})?`);
  process.exit(1);
}
console.error(`built ${output} (${(statSync(output).size / 1e6).toFixed(1)} MB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
