import { isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Scalar } from "yaml";
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
export function plainIsSafe(value: string): boolean {
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

/** A piece of the original text to replace: `[start, end)` becomes `text`. An insertion has start = end. */
export interface TextEdit {
  start: number;
  end: number;
  text: string;
}

/**
 * Applies text edits from the back, so that earlier offsets stay valid. Edits must not overlap; insertions at the
 * same place end up in the order given.
 */
export function spliceText(text: string, edits: TextEdit[]): string {
  const ordered = edits
    .map((edit, index) => ({ ...edit, index }))
    .sort((a, b) => b.start - a.start || b.end - a.end || b.index - a.index);
  let result = text;
  for (const edit of ordered) result = result.slice(0, edit.start) + edit.text + result.slice(edit.end);
  return result;
}

/** The text edits for scalars whose value differs, and one change line for each. */
export function scalarTextEdits(edits: ScalarEdit[], file: string): { edits: TextEdit[]; changes: string[] } {
  const effective = edits.filter((edit) => String(edit.node.value) !== edit.value);
  const textEdits = effective.map((edit) => {
    const range = edit.node.range;
    if (!range) throw new Error(`no source range for ${edit.where}`);
    return { start: range[0], end: range[1], text: render(edit.node, edit.value, edit.where, file) };
  });
  return {
    edits: textEdits,
    changes: effective.map((e) => `${e.where}: ${String(e.node.value)} -> ${e.value}`),
  };
}

/**
 * Rewrites scalars surgically: only the characters of each value change, so comments, key order, quoting,
 * indentation and document separators stay exactly as they were. Edits whose value is already in place are
 * skipped. The caller re-parses the result to prove the new values are there.
 */
export function applyScalarEdits(text: string, edits: ScalarEdit[], file: string): EditResult {
  const { edits: textEdits, changes } = scalarTextEdits(edits, file);
  return { text: spliceText(text, textEdits), changes };
}

/**
 * Walks a key path (`image.tag`, `images.0.tag`) from `start`: the node there, or undefined when a key is
 * missing. Says clearly what is in the way: a list reached with a key that is not a number, or a single value
 * with keys left. `shown` is the path as the user knows it, for messages.
 */
export function lookup(start: Node, path: string[], shown: string, subject: string): Node | undefined {
  let node: Node = start;
  for (const [index, key] of path.entries()) {
    const prefix = path.slice(0, index).join(".") || "the top level";
    let next: unknown;
    if (isMap(node)) {
      next = node.get(key, true);
    } else if (isSeq(node)) {
      if (!/^\d+$/.test(key)) {
        throw new TerminalError(
          `${subject}: ${prefix} is a list, so the key path ${shown} cannot go on with "${key}"; select an item by number (${prefix}.0.${key}) or fix the key path in the target's change`,
        );
      }
      next = node.get(Number(key), true);
    } else {
      throw new TerminalError(
        `${subject}: ${prefix} is a single value, so the key path ${shown} cannot go through it; fix the key path in the target's change`,
      );
    }
    if (next === undefined || next === null) return undefined;
    node = next as Node;
  }
  return node;
}

/** Finds the scalar at a key path below `start` (the document's top by default), or says what is missing. */
export function scalarAt(
  document: Document.Parsed,
  keyPath: string,
  file: string,
  start: Node | null = document.contents,
  shown = keyPath,
): Scalar {
  if (!start) throw new TerminalError(`${file} is empty; it needs the key ${shown}`);
  const node = lookup(start, keyPath.split("."), shown, file);
  if (node === undefined) {
    throw new TerminalError(
      `${file} has no key ${shown}; add it to the file or fix the key path in the target's change`,
    );
  }
  if (!isScalar(node)) {
    throw new TerminalError(
      `${file}: ${shown} is not a single value (it is a map or list); point the key path at a value`,
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
