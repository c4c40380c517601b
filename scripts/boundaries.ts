import { readdirSync, readFileSync } from 'node:fs';
import { join, posix, resolve, dirname } from 'node:path';

/**
 * Import boundaries (STYLE.md "Shape"), checked by `test/boundaries.test.ts` in `npm test`.
 * dependency-cruiser cannot read TypeScript 7 sources yet, so this reads import specifiers itself.
 */
export interface BoundaryRule {
  name: string;
  /** Files the rule applies to (repository-relative, POSIX). */
  from: RegExp;
  /** Forbidden targets: repository-relative paths for relative imports, bare names otherwise. */
  to: RegExp[];
}

const SDK = /^(@google-cloud\/|google-auth-library|@duckdb\/|firebase|@firebase\/)/;
const NODE_IO = /^(node:)?(fs|fs\/promises|net|http|https|http2|child_process|sqlite|dgram|tls|worker_threads)$/;

export const RULES: BoundaryRule[] = [
  { name: 'core imports no adapter, SDK or I/O', from: /^functions\/core\//, to: [/^functions\/(?!core\/)/, /^runtime\//, SDK, NODE_IO] },
  { name: 'worker never imports control-plane code', from: /^enclave-worker\//, to: [/^functions\//] },
  { name: 'protocol imports neither side and stays browser-safe', from: /^protocol\//, to: [/^(functions|enclave-worker|client)\//, SDK, /^node:/] },
  { name: 'client imports no server code', from: /^client\//, to: [/^(functions|enclave-worker|runtime)\//] },
  { name: 'the SDK imports nothing of the CLI', from: /^client\/sdk\//, to: [/^client\/cli\//] },
  { name: 'runtime helpers import neither deployable', from: /^runtime\//, to: [/^(functions|enclave-worker|client)\//] },
];

const IMPORT = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;

/** Every import specifier in a TypeScript source text. */
export function importSpecifiers(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(IMPORT)) out.push((m[1] ?? m[2])!);
  return out;
}

/** Violations of `rules` by one file, given its repository-relative path and text. */
export function checkFile(file: string, source: string, rules: BoundaryRule[] = RULES): string[] {
  const violations: string[] = [];
  for (const rule of rules.filter((r) => r.from.test(file))) {
    for (const spec of importSpecifiers(source)) {
      const target = spec.startsWith('.') ? posix.normalize(posix.join(posix.dirname(file), spec)) : spec;
      if (rule.to.some((re) => re.test(target))) violations.push(`${file} imports ${spec}: ${rule.name}`);
    }
  }
  return violations;
}

function* sources(root: string, dir: string): Generator<string> {
  for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
    const path = posix.join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(root, path);
    else if (/\.(ts|js|mjs)$/.test(entry.name)) yield path;
  }
}

/** Checks every source file under the four source folders of the repository at `root`. */
export function checkRepository(root: string): string[] {
  const violations: string[] = [];
  for (const dir of ['functions', 'enclave-worker', 'protocol', 'client', 'runtime']) {
    try {
      for (const file of sources(root, dir)) violations.push(...checkFile(file, readFileSync(join(root, file), 'utf8')));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return violations;
}

export const REPO_ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
