import { isMap, type Node, type YAMLMap, type YAMLSeq } from "yaml";
import { TerminalError } from "../../shared/errors.js";
import { plainIsSafe, type TextEdit } from "./yaml-scalar.js";

/**
 * New YAML text for the few structural edits (an entry added to a list, a key added to a map). Like the scalar
 * edits, these only insert text at one place: nothing else in the file is re-rendered.
 */

export const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const isEmptyCollection = (value: unknown): boolean =>
  (Array.isArray(value) && value.length === 0) || (isPlainObject(value) && Object.keys(value).length === 0);

/** The column of an offset: characters since the start of its line. */
export function columnOf(text: string, offset: number): number {
  return offset - (text.lastIndexOf("\n", offset - 1) + 1);
}

/** A new scalar: plain when it reads back as the same string, else double-quoted; numbers, booleans and null plain. */
export function renderScalar(value: unknown): string {
  if (typeof value === "string") return plainIsSafe(value) ? value : JSON.stringify(value);
  if (value === null || value === undefined) return "null";
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value); // a non-empty list inside a list: flow style, which is valid YAML
}

function renderInline(value: unknown): string {
  if (Array.isArray(value) && value.length === 0) return "[]";
  if (isPlainObject(value) && Object.keys(value).length === 0) return "{}";
  return renderScalar(value);
}

/** How far list items sit to the right of their key in this file: 0 (`key:\n- a`) or 2 (`key:\n  - a`). */
export function seqIndentOf(text: string): number {
  const match = /^( *)[^\s#-][^\n]*:[ \t]*(?:#[^\n]*)?\n( *)- /m.exec(text);
  return match && (match[2] ?? "").length === (match[1] ?? "").length ? 0 : 2;
}

/** The lines of `key: value` at `indent` spaces: maps and non-empty lists in block style. */
export function renderPair(key: string, value: unknown, indent: number, seqIndent: number): string[] {
  const head = `${" ".repeat(indent)}${renderScalar(key)}:`;
  if (isPlainObject(value) && !isEmptyCollection(value)) {
    return [head, ...Object.entries(value).flatMap(([k, v]) => renderPair(k, v, indent + 2, seqIndent))];
  }
  if (Array.isArray(value) && value.length > 0) {
    return [head, ...value.flatMap((item) => renderItem(item, indent + seqIndent, seqIndent))];
  }
  return [`${head} ${renderInline(value)}`];
}

/** The lines of one list item `- value` whose dash is at `indent` spaces. */
export function renderItem(value: unknown, indent: number, seqIndent: number): string[] {
  const dash = `${" ".repeat(indent)}- `;
  if (isPlainObject(value) && !isEmptyCollection(value)) {
    const lines = Object.entries(value).flatMap(([k, v]) => renderPair(k, v, indent + 2, seqIndent));
    return lines.map((line, i) => (i === 0 ? dash + line.slice(indent + 2) : line));
  }
  return [dash + renderInline(value)];
}

/**
 * Adds lines at the end of a block map or list (after its last entry, before whatever follows it). `render`
 * gets the indentation of the entries. An empty flow collection (`{}`, `[]`) after a key is replaced by a block
 * one under that key; a non-empty flow collection is refused.
 */
export function appendToCollection(
  text: string,
  collection: YAMLMap | YAMLSeq,
  render: (indent: number) => string[],
  options: { where: string; file: string },
): TextEdit {
  const range = collection.range;
  if (!range) throw new Error(`no source range for ${options.where}`);
  if (collection.flow) {
    if (collection.items.length > 0) {
      throw new TerminalError(
        `${options.file}: ${options.where} is written in flow style ({...} or [...]); the service adds entries only to block maps and lists, so write it in block style`,
      );
    }
    const nested = keyColumnAt(text, range[0]) + (isMap(collection) ? 2 : seqIndentOf(text));
    let start = range[0];
    while (text[start - 1] === " ") start--; // no trailing space after `key:`
    const lineEnd = text.indexOf("\n", range[1]) < 0 ? text.length : text.indexOf("\n", range[1]);
    const comment = text.slice(range[1], lineEnd); // stays on the line of the key
    return { start, end: lineEnd, text: `${comment}\n${render(nested).join("\n")}` };
  }
  const first = collection.items[0] as { key?: Node } | Node | undefined;
  const firstOffset = isMap(collection)
    ? ((first as { key?: Node } | undefined)?.key?.range?.[0] ?? range[0])
    : range[0];
  const indent = columnOf(text, firstOffset);
  const end = range[1];
  const newline = end > 0 && text[end - 1] !== "\n" ? "\n" : "";
  return { start: end, end, text: `${newline}${render(indent).join("\n")}\n` };
}

/** The column of the key on the line of `offset`: after the indentation and any `- ` of list items. */
function keyColumnAt(text: string, offset: number): number {
  const lineStart = text.lastIndexOf("\n", offset - 1) + 1;
  const lead = /^(?: *- +)* */.exec(text.slice(lineStart, offset))?.[0] ?? "";
  return lead.length;
}
