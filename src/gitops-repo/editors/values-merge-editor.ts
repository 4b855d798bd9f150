import { isDeepStrictEqual } from "node:util";
import { isMap, isScalar, type Pair, type YAMLMap } from "yaml";
import type { ChangeSpec } from "../../config/schema.js";
import { TerminalError } from "../../shared/errors.js";
import {
  parseYaml,
  scalarTextEdits,
  spliceText,
  type EditResult,
  type ScalarEdit,
  type TextEdit,
} from "./yaml-scalar.js";
import { appendToCollection, columnOf, isPlainObject, renderPair, seqIndentOf } from "./yaml-text.js";

type ValuesMergeChange = Extract<ChangeSpec, { kind: "values-merge" }>;

const shown = (value: unknown) => (typeof value === "string" ? value : JSON.stringify(value));

/** The deep merge the edited file must read back as: maps merge, scalars and lists replace. */
function merged(base: unknown, incoming: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(incoming)) return incoming;
  const result: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(incoming)) result[key] = merged(base[key], value);
  return result;
}

class Merge {
  readonly edits: TextEdit[] = [];
  readonly scalars: ScalarEdit[] = [];
  readonly changes: string[] = [];
  private readonly seqIndent: number;

  constructor(
    private readonly text: string,
    private readonly file: string,
  ) {
    this.seqIndent = seqIndentOf(text);
  }

  into(map: YAMLMap, incoming: Record<string, unknown>, path: string[]): void {
    const missing: Array<[string, unknown]> = [];
    for (const [key, value] of Object.entries(incoming)) {
      const where = [...path, key].join(".");
      const pair = map.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === key);
      if (!pair) missing.push([key, value]);
      else if (isPlainObject(value) && isMap(pair.value)) this.into(pair.value, value, [...path, key]);
      else this.replace(pair, key, value, where);
    }
    if (missing.length === 0) return;
    const lines = (indent: number) => missing.flatMap(([k, v]) => renderPair(k, v, indent, this.seqIndent));
    const where = path.join(".") || "the top level";
    this.edits.push(appendToCollection(this.text, map, lines, { where, file: this.file }));
    this.changes.push(...missing.map(([k, v]) => `${[...path, k].join(".")}: (none) -> ${shown(v)}`));
  }

  /** A scalar keeps its quoting; anything else (a list, a map replaced by a scalar, ...) is written anew. */
  private replace(pair: Pair, key: string, value: unknown, where: string): void {
    const node = pair.value;
    const scalarValue = !isPlainObject(value) && !Array.isArray(value);
    if (isScalar(node) && scalarValue) {
      if (node.value === value) return;
      if (typeof value === "string") {
        this.scalars.push({ node, value, where });
        return;
      }
    }
    const old = isScalar(node) ? node.value : (node as { toJSON?: () => unknown } | null)?.toJSON?.();
    if (isDeepStrictEqual(old, value)) return;
    const keyRange = (pair.key as { range?: [number, number, number] } | null)?.range;
    const valueRange = (node as { range?: [number, number, number] } | null)?.range;
    if (!keyRange || !valueRange) throw new Error(`no source range for ${where}`);
    const colon = this.text.indexOf(":", keyRange[1]);
    let end = valueRange[1];
    if (!isScalar(node) && this.text[end - 1] === "\n") end--; // a block collection ends after its newline
    const [head, ...rest] = renderPair(key, value, columnOf(this.text, keyRange[0]), this.seqIndent);
    const afterColon = [(head ?? "").slice((head ?? "").indexOf(":") + 1), ...rest].join("\n");
    this.edits.push({ start: colon + 1, end, text: afterColon });
    this.changes.push(`${where}: ${shown(old)} -> ${shown(value)}`);
  }
}

/**
 * `configurationChange.values` of the triggered event (without `image`, unless `change.keepImage`) deep-merged into
 * a values file: maps merge, scalars and lists replace, missing keys are added at the end of their map.
 */
export function editValuesMerge(
  text: string,
  file: string,
  change: ValuesMergeChange,
  values: Record<string, unknown>,
): EditResult {
  const incoming = Object.fromEntries(
    Object.entries(values).filter(([key]) => change.keepImage === true || key !== "image"),
  );
  const document = parseYaml(text, file);
  if (!isMap(document.contents)) {
    throw new TerminalError(
      `${file} is not a map of values at the top level; point the target's file at a Helm values file`,
    );
  }
  const before = document.toJS() as unknown;
  const merge = new Merge(text, file);
  merge.into(document.contents, incoming, []);
  const scalars = scalarTextEdits(merge.scalars, file);
  const result = {
    text: spliceText(text, [...scalars.edits, ...merge.edits]),
    changes: [...scalars.changes, ...merge.changes],
  };
  const after = parseYaml(result.text, file).toJS() as unknown;
  if (!isDeepStrictEqual(after, merged(before, incoming))) {
    throw new Error(
      `the merge of configurationChange.values into ${file} did not take: the file reads back otherwise`,
    );
  }
  return result;
}
