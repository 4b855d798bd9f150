import { isScalar, parseDocument, type Document, type Scalar } from "yaml";
import { TerminalError } from "../../shared/errors.js";

/** One scalar to rewrite in place: the node as parsed from the original text, and its new value. */
export interface ScalarEdit {
  node: Scalar;
  value: string;
  /** Human-readable place, e.g. `image.tag` or `Deployment/orders container orders`. */
  where: string;
}

/** What an editor did: the new text and one line per value it changed (empty when nothing changed). */
export interface EditResult {
  text: string;
  changes: string[];
}

/** Throws a message that names the file and line when a parsed YAML document has errors. */
export function assertYamlValid(
  document: { errors: Array<{ message: string; linePos?: [{ line: number }, ...unknown[]] | undefined }> },
  file: string,
): void {
  const error = document.errors[0];
  if (!error) return;
  const what = (error.message.split("\n")[0] ?? "")
    .replace(/ at line \d+, column \d+:?$/, "")
    .replace(/:$/, "");
  throw new TerminalError(
    `${file} is not valid YAML (line ${error.linePos?.[0]?.line ?? "?"}): ${what}; fix the file in the repository`,
  );
}

/** Parses one YAML file, turning syntax errors into a message that names the file and line. */
export function parseYaml(text: string, file: string): Document.Parsed {
  const document = parseDocument(text, { keepSourceTokens: false });
  assertYamlValid(document, file);
  return document;
}

/** Would this text read back as the same string if written as a plain (unquoted) scalar? */
function plainIsSafe(value: string): boolean {
  if (value === "" || /^\s|\s$|[:#]\s|[\n\r]|^[-?:,[\]{}#&*!|>'"%@`]/.test(value)) return false;
  const reread = parseDocument(`k: ${value}\n`);
  return reread.errors.length === 0 && reread.get("k") === value;
}

function render(node: Scalar, value: string, where: string, file: string): string {
  switch (node.type) {
    case "QUOTE_SINGLE":
      return `'${value.replace(/'/g, "''")}'`;
    case "QUOTE_DOUBLE":
      return JSON.stringify(value);
    case "PLAIN":
      return plainIsSafe(value) ? value : JSON.stringify(value);
    default:
      throw new TerminalError(
        `${file}: ${where} is a ${node.type ?? "non-scalar"} value, which the service does not rewrite; write it as a plain or quoted scalar`,
      );
  }
}

/**
 * Rewrites scalars surgically: only the characters of each value change, so comments, key order, quoting,
 * indentation and document separators stay exactly as they were. Edits whose value is already in place are
 * skipped. The caller re-parses the result to prove the new values are there.
 */
export function applyScalarEdits(text: string, edits: ScalarEdit[], file: string): EditResult {
  const effective = edits.filter((edit) => String(edit.node.value) !== edit.value);
  const ordered = [...effective].sort((a, b) => (b.node.range?.[0] ?? 0) - (a.node.range?.[0] ?? 0));
  let result = text;
  for (const edit of ordered) {
    const range = edit.node.range;
    if (!range) throw new Error(`no source range for ${edit.where}`);
    result =
      result.slice(0, range[0]) + render(edit.node, edit.value, edit.where, file) + result.slice(range[1]);
  }
  return { text: result, changes: effective.map((e) => `${e.where}: ${String(e.node.value)} -> ${e.value}`) };
}

/** Finds the scalar at a dotted key path (`image.tag`), or says what is missing. */
export function scalarAt(document: Document.Parsed, keyPath: string, file: string): Scalar {
  const path = keyPath.split(".");
  const node = document.getIn(path, true);
  if (node === undefined) {
    throw new TerminalError(
      `${file} has no key ${keyPath}; add it to the file or fix the key path in the target's change`,
    );
  }
  if (!isScalar(node)) {
    throw new TerminalError(
      `${file}: ${keyPath} is not a single value (it is a map or list); point the key path at a value`,
    );
  }
  return node;
}

export function expectValue(actual: unknown, expected: string, where: string, file: string): void {
  if (String(actual) !== expected) {
    throw new Error(
      `the edit of ${where} in ${file} did not take: it reads back as ${String(actual)}, not ${expected}`,
    );
  }
}
