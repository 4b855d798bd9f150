import { isMap, isScalar, isSeq, type Document, type YAMLMap } from "yaml";
import type { ChangeSpec } from "../../config/schema.js";
import { TerminalError } from "../../shared/errors.js";
import type { ImageReference } from "../image-reference.js";
import {
  expectValue,
  parseYaml,
  scalarTextEdits,
  spliceText,
  type EditResult,
  type ScalarEdit,
  type TextEdit,
} from "./yaml-scalar.js";
import { appendToCollection, renderItem, renderPair, seqIndentOf } from "./yaml-text.js";

type KustomizeImagesChange = Extract<ChangeSpec, { kind: "kustomize-images" }>;
type Field = "newName" | "newTag" | "digest";
const FIELDS: Field[] = ["newName", "newTag", "digest"];

/** Refuses what is not a kustomization.yaml: another kind, or a Flux Kustomization (same kind, other API). */
function assertKustomization(document: Document.Parsed, file: string): void {
  const kind = document.get("kind");
  const apiVersion = String(document.get("apiVersion") ?? "");
  if (!isMap(document.contents) || (kind !== undefined && kind !== "Kustomization")) {
    throw new TerminalError(
      `${file} is not a kustomization.yaml (kind: ${String(kind ?? "none")}); point the target's file at the kustomization.yaml of the overlay`,
    );
  }
  if (apiVersion.startsWith("kustomize.toolkit.fluxcd.io")) {
    throw new TerminalError(
      `${file} is a Flux Kustomization, not a kustomization.yaml; point the target's file at the kustomization.yaml it builds`,
    );
  }
}

/** The fields the entry must end with: exactly the parts the image has, so no old tag or digest stays behind. */
function wantedFields(
  name: string,
  image: ImageReference,
  entry: YAMLMap | undefined,
): Map<Field, string | undefined> {
  if (!image.tag && !image.digest) {
    throw new TerminalError(
      `the image ${image.reference} has neither a tag nor a digest, but a Kustomize images entry needs one; send an image with a :tag or @digest`,
    );
  }
  const keepName = name !== image.repository || entry?.has("newName") === true;
  return new Map<Field, string | undefined>([
    ["newName", keepName ? image.repository : undefined],
    ["newTag", image.tag],
    ["digest", image.digest],
  ]);
}

/** Deletes the line(s) of one `key: value` pair of a block map; refuses the first key of a list item (`- key:`). */
function removePair(text: string, entry: YAMLMap, key: Field, where: string, file: string): TextEdit {
  const pair = entry.items.find((p) => isScalar(p.key) && p.key.value === key);
  const keyStart = (pair?.key as { range?: [number, number, number] } | undefined)?.range?.[0];
  const valueEnd = (pair?.value as { range?: [number, number, number] } | undefined)?.range?.[2];
  if (!pair || keyStart === undefined || valueEnd === undefined)
    throw new Error(`no source range for ${where}`);
  const lineStart = text.lastIndexOf("\n", keyStart - 1) + 1;
  if (entry.flow || entry.items[0] === pair || text.slice(lineStart, keyStart).trim() !== "") {
    throw new TerminalError(
      `${file}: ${where} has to go, but it is not on a line of its own in a block map; move name to the first line of the entry`,
    );
  }
  return { start: lineStart, end: valueEnd, text: "" };
}

/**
 * A kustomization.yaml `images:` entry matched by `name` (the image's repository, or `change.name`): `newName`,
 * `newTag` and `digest` set to the image's parts. The entry (and `images:`) is added when missing.
 */
export function editKustomizeImages(
  text: string,
  file: string,
  change: KustomizeImagesChange,
  image: ImageReference,
): EditResult {
  const document = parseYaml(text, file);
  assertKustomization(document, file);
  const name = change.name ?? image.repository;
  const label = `images[${name}]`;
  const images = document.get("images", true);
  if (images !== undefined && !isSeq(images)) {
    throw new TerminalError(`${file}: images is not a list; write it as a list of name/newTag entries`);
  }
  const entries = (images?.items ?? []).filter(
    (item): item is YAMLMap => isMap(item) && item.get("name") === name,
  );
  if (entries.length > 1) {
    throw new TerminalError(`${file} has ${entries.length} images entries named ${name}; keep one`);
  }
  const entry = entries[0];
  const wanted = wantedFields(name, image, entry);
  const seqIndent = seqIndentOf(text);
  const textEdits: TextEdit[] = [];
  const changes: string[] = [];

  if (!entry) {
    const fields = Object.fromEntries([...wanted].filter(([, value]) => value !== undefined));
    const item = { name, ...fields };
    const lines = (indent: number) => renderItem(item, indent, seqIndent);
    if (images) textEdits.push(appendToCollection(text, images, lines, { where: "images", file }));
    else {
      const root = document.contents as YAMLMap;
      const pair = (indent: number) => renderPair("images", [item], indent, seqIndent);
      textEdits.push(appendToCollection(text, root, pair, { where: "the top level", file }));
    }
    changes.push(
      ...Object.entries(fields).map(([field, value]) => `${label}.${field}: (none) -> ${String(value)}`),
    );
  } else {
    const scalarEdits: ScalarEdit[] = [];
    const added: Array<[Field, string]> = [];
    for (const field of FIELDS) {
      const value = wanted.get(field);
      const node = entry.get(field, true);
      if (node !== undefined && !isScalar(node)) {
        throw new TerminalError(`${file}: ${label}.${field} is not a single value; fix the entry`);
      }
      if (value === undefined && node) {
        textEdits.push(removePair(text, entry, field, `${label}.${field}`, file));
        changes.push(`${label}.${field}: ${String(node.value)} -> (removed)`);
      } else if (value !== undefined && node) scalarEdits.push({ node, value, where: `${label}.${field}` });
      else if (value !== undefined) added.push([field, value]);
    }
    const scalars = scalarTextEdits(scalarEdits, file);
    textEdits.push(...scalars.edits);
    changes.unshift(...scalars.changes);
    if (added.length > 0) {
      const lines = (indent: number) =>
        added.flatMap(([field, value]) => renderPair(field, value, indent, seqIndent));
      textEdits.push(appendToCollection(text, entry, lines, { where: label, file }));
      changes.push(...added.map(([field, value]) => `${label}.${field}: (none) -> ${value}`));
    }
  }

  const result = { text: spliceText(text, textEdits), changes };
  const reread = parseYaml(result.text, file).get("images", true);
  const after = isSeq(reread)
    ? reread.items.find((item) => isMap(item) && item.get("name") === name)
    : undefined;
  for (const [field, value] of wanted) {
    const actual = isMap(after) ? after.get(field) : undefined;
    expectValue(actual ?? "(none)", value ?? "(none)", `${label}.${field}`, file);
  }
  return result;
}
