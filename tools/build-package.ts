/**
 * Builds the installable package (`npm run build:pkg`, run by `npm pack` through `prepack`):
 * src/cache → dist/cache (`edgecache/cache`) and src/hono → dist/hono (`edgecache/hono`), as
 * ES2022 modules with .d.ts beside them.
 *
 * The sources import extensionless paths (`./engine`, `../cache`), which bundlers accept but
 * Node's ESM loader and `moduleResolution: node16` do not. The emit therefore rewrites every
 * relative specifier to the file it names (`./engine.js`, `../cache/index.js`), in the JS and
 * in the declarations, so the package loads in Workers bundles, in Node and under every
 * TypeScript module resolution.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { outputFile as luaModule, renderScriptsModule } from "./build-lua";

const root = fileURLToPath(new URL("..", import.meta.url));
const log = (line: string) => console.log(`[build:pkg] ${line}`);

/** `./engine` → `./engine.js`, `../cache` → `../cache/index.js`; bare specifiers unchanged. */
function fullySpecified(specifier: string, fromFile: string): string {
  if (!specifier.startsWith(".")) return specifier;
  const base = resolve(dirname(fromFile), specifier);
  if (existsSync(`${base}.ts`)) return `${specifier}.js`;
  if (existsSync(join(base, "index.ts"))) return `${specifier.replace(/\/$/, "")}/index.js`;
  throw new Error(`${relative(root, fromFile)}: cannot resolve import "${specifier}"`);
}

function rewriteSpecifiers<N extends ts.SourceFile | ts.Bundle>(
  context: ts.TransformationContext,
): (node: N) => N {
  const f = context.factory;
  return (node) => {
    if (!ts.isSourceFile(node)) return node;
    // Declaration files are transformed with the .d.ts as fileName; map back to the source.
    const source = node.fileName.replace(/\.d\.ts$/, ".ts");
    const literal = (s: ts.Expression) =>
      ts.isStringLiteral(s) ? f.createStringLiteral(fullySpecified(s.text, source)) : s;
    const visit = (n: ts.Node): ts.Node => {
      if (ts.isImportDeclaration(n)) {
        return f.updateImportDeclaration(
          n,
          n.modifiers,
          n.importClause,
          literal(n.moduleSpecifier),
          n.attributes,
        );
      }
      if (ts.isExportDeclaration(n) && n.moduleSpecifier) {
        return f.updateExportDeclaration(
          n,
          n.modifiers,
          n.isTypeOnly,
          n.exportClause,
          literal(n.moduleSpecifier),
          n.attributes,
        );
      }
      if (
        ts.isImportTypeNode(n) &&
        ts.isLiteralTypeNode(n.argument) &&
        ts.isStringLiteral(n.argument.literal)
      ) {
        return f.updateImportTypeNode(
          n,
          f.updateLiteralTypeNode(n.argument, literal(n.argument.literal) as ts.StringLiteral),
          n.attributes,
          n.qualifier,
          n.typeArguments?.map((t) => ts.visitNode(t, visit) as ts.TypeNode),
          n.isTypeOf,
        );
      }
      return ts.visitEachChild(n, visit, context);
    };
    return ts.visitNode(node, visit) as N;
  };
}

function formatDiagnostics(diagnostics: readonly ts.Diagnostic[]): string {
  return ts.formatDiagnosticsWithColorAndContext(diagnostics, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => root,
    getNewLine: () => "\n",
  });
}

export function buildPackage(): { files: string[]; ms: number } {
  const started = Date.now();
  // A tarball with scripts that disagree with their .lua sources would run other Lua than the
  // repository documents: refuse, like test/node/cache/scripts.test.ts does.
  if (readFileSync(luaModule, "utf8") !== renderScriptsModule()) {
    throw new Error("src/cache/scripts/index.ts is out of date: run `npm run build:lua` first.");
  }
  const configPath = join(root, "tsconfig.build.json");
  const parsed = ts.getParsedCommandLineOfConfigFile(configPath, undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(formatDiagnostics([d]));
    },
  });
  if (!parsed) throw new Error(`cannot read ${configPath}`);
  const outDir = parsed.options.outDir ?? join(root, "dist");
  rmSync(outDir, { recursive: true, force: true });
  const program = ts.createProgram(parsed.fileNames, parsed.options);
  const files: string[] = [];
  const result = program.emit(
    undefined,
    (fileName, text) => {
      ts.sys.writeFile(fileName, text);
      files.push(relative(root, fileName));
    },
    undefined,
    false,
    { after: [rewriteSpecifiers], afterDeclarations: [rewriteSpecifiers] },
  );
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics];
  if (diagnostics.length > 0) throw new Error(formatDiagnostics(diagnostics));
  // The engine's reference documentation travels with it.
  writeFileSync(
    join(outDir, "cache", "README.md"),
    readFileSync(join(root, "src/cache/README.md")),
  );
  files.push(relative(root, join(outDir, "cache", "README.md")));
  return { files, ms: Date.now() - started };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    log("compiling src/cache and src/hono (tsconfig.build.json) …");
    const { files, ms } = buildPackage();
    log(`wrote ${files.length} files to dist/ in ${ms} ms`);
  } catch (error) {
    console.error(`[build:pkg] failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}
