import { parseAllDocuments, type Document } from "yaml";
import { TerminalError } from "../../shared/errors.js";
import { applyScalarEdits, assertYamlValid, expectValue, scalarAt, type EditResult } from "./yaml-scalar.js";

/** Parses every document of a file (`---` separated), turning syntax errors into a message with file and line. */
export function parseYamlDocuments(text: string, file: string): Document.Parsed[] {
  const documents = Array.from(parseAllDocuments(text) as Document.Parsed[]);
  documents.forEach((document) => assertYamlValid(document, file));
  return documents;
}

const describe = (document: Document.Parsed, index: number): string => {
  const kind = document.get("kind");
  const name = document.getIn(["metadata", "name"]);
  return typeof kind === "string" ? `${kind}/${String(name ?? "?")}` : `document ${index + 1} (no kind)`;
};

/** One Kubernetes object of a file by `kind`, and by `metadata.name` when given; says what it found otherwise. */
export function documentOfKind(
  documents: Document.Parsed[],
  kind: string,
  name: string | undefined,
  file: string,
): { index: number; subject: string } {
  const matches = documents
    .map((document, index) => ({ document, index }))
    .filter(
      ({ document }) =>
        document.get("kind") === kind && (!name || document.getIn(["metadata", "name"]) === name),
    );
  const only = matches[0];
  if (!only) {
    const found = documents.map(describe).join(", ") || "no documents";
    throw new TerminalError(
      `${file} has no ${kind}${name ? ` named ${name}` : ""} (found: ${found}); point the target's file at it${name ? " or fix change.name" : ""}`,
    );
  }
  if (matches.length > 1) {
    const names = matches.map(({ document, index }) => describe(document, index)).join(", ");
    throw new TerminalError(
      `${file} holds ${matches.length} of kind ${kind} (${names}); set change.name to choose one`,
    );
  }
  return { index: only.index, subject: `${file} (${describe(only.document, only.index)})` };
}

/**
 * Sets the scalars at key paths below `base` in one document of the file, surgically, and proves the new values
 * by parsing the result again. Each key path must exist and hold a single value.
 */
export function setKeyPaths(
  text: string,
  file: string,
  at: { documents: Document.Parsed[]; index: number; base: string[]; subject: string },
  wanted: Array<[string, string]>,
): EditResult {
  const document = at.documents[at.index];
  if (!document) throw new Error(`no document ${at.index} in ${file}`);
  const full = wanted.map(([keyPath, value]): [string, string] => [[...at.base, keyPath].join("."), value]);
  const edits = full.map(([keyPath, value]) => ({
    node: scalarAt(document, keyPath, at.subject),
    value,
    where: keyPath,
  }));
  const result = applyScalarEdits(text, edits, file);
  const reread = parseYamlDocuments(result.text, file)[at.index];
  for (const [keyPath, value] of full) expectValue(reread?.getIn(keyPath.split(".")), value, keyPath, file);
  return result;
}
