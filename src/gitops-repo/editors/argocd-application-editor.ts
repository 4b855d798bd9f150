import { isMap, isScalar, isSeq, type Document } from "yaml";
import type { ChangeSpec } from "../../config/schema.js";
import { TerminalError } from "../../shared/errors.js";
import type { ImageReference } from "../image-reference.js";
import { imageKeyValues } from "./image-keys.js";
import { documentOfKind, parseYamlDocuments, setKeyPaths } from "./yaml-documents.js";
import {
  expectValue,
  scalarTextEdits,
  spliceText,
  type EditResult,
  type ScalarEdit,
  type TextEdit,
} from "./yaml-scalar.js";
import { appendToCollection, renderItem, renderPair, seqIndentOf } from "./yaml-text.js";

type ArgoCdApplicationChange = Extract<ChangeSpec, { kind: "argocd-application" }>;

/** `https://host/org/repo.git/` and `https://host/org/repo` are the same repository. */
const sameUrl = (a: string, b: string) =>
  a.replace(/\/+$/, "").replace(/\.git$/, "") === b.replace(/\/+$/, "").replace(/\.git$/, "");

/** The path of the source to edit: `spec.source`, or the item of `spec.sources` chosen by repoURL or name. */
function sourcePath(document: Document.Parsed, change: ArgoCdApplicationChange, subject: string): string[] {
  const wanted = change.source;
  const matches = (source: { repoURL: string; name: string }) =>
    !wanted ||
    ((!wanted.repoURL || sameUrl(source.repoURL, wanted.repoURL)) &&
      (!wanted.name || source.name === wanted.name));
  const chosen = [wanted?.repoURL && `repoURL ${wanted.repoURL}`, wanted?.name && `name ${wanted.name}`]
    .filter(Boolean)
    .join(" and ");
  const describe = (source: unknown) => {
    const repoURL = isMap(source) ? String(source.get("repoURL") ?? "") : "";
    const name = isMap(source) ? String(source.get("name") ?? "") : "";
    return { repoURL, name, shown: name ? `${name} (${repoURL})` : repoURL || "?" };
  };

  const sources = document.getIn(["spec", "sources"], true);
  if (isSeq(sources)) {
    const all = sources.items.map((item, index) => ({ index, ...describe(item) }));
    const found = all.map((s) => s.shown).join(", ");
    if (!wanted && all.length > 1) {
      throw new TerminalError(
        `${subject} has ${all.length} sources (${found}); set change.source.repoURL or change.source.name to choose one`,
      );
    }
    const hits = all.filter(matches);
    const hit = hits[0];
    if (!hit) {
      throw new TerminalError(
        `${subject} has no source with ${chosen} (found: ${found || "none"}); fix change.source`,
      );
    }
    if (hits.length > 1) {
      throw new TerminalError(
        `${subject} has ${hits.length} sources with ${chosen} (${hits.map((s) => s.shown).join(", ")}); choose by change.source.name`,
      );
    }
    return ["spec", "sources", String(hit.index)];
  }
  const source = document.getIn(["spec", "source"], true);
  if (!isMap(source)) {
    throw new TerminalError(
      `${subject} has neither spec.source nor spec.sources; point the target's file at an Application with a Helm source`,
    );
  }
  if (!matches(describe(source))) {
    throw new TerminalError(
      `${subject}: its source ${describe(source).shown} is not the one with ${chosen}; fix change.source`,
    );
  }
  return ["spec", "source"];
}

/** `helm.parameters` items by name: the value replaced, or a `- name: ..., value: ...` item added. */
function editParameters(
  text: string,
  file: string,
  at: { documents: Document.Parsed[]; index: number; source: string[]; subject: string },
  wanted: Array<[string, string]>,
): EditResult {
  const document = at.documents[at.index]!;
  const paramsPath = [...at.source, "helm", "parameters"];
  const shown = paramsPath.join(".");
  const seqIndent = seqIndentOf(text);
  const scalarEdits: ScalarEdit[] = [];
  const missing: Array<{ name: string; value: string }> = [];
  const params = document.getIn(paramsPath, true);
  if (params !== undefined && !isSeq(params)) {
    throw new TerminalError(`${at.subject}: ${shown} is not a list; write it as a list of name/value items`);
  }
  for (const [name, value] of wanted) {
    const item = params?.items.find((p) => isMap(p) && p.get("name") === name);
    if (!isMap(item)) {
      missing.push({ name, value });
      continue;
    }
    const node = item.get("value", true);
    if (!isScalar(node)) {
      throw new TerminalError(
        `${at.subject}: the parameter ${name} in ${shown} has no single value; give it a value`,
      );
    }
    scalarEdits.push({ node, value, where: `${shown} ${name}` });
  }

  const { edits, changes } = scalarTextEdits(scalarEdits, file);
  const textEdits: TextEdit[] = [...edits];
  if (missing.length > 0) {
    const items = (indent: number) => missing.flatMap((p) => renderItem(p, indent, seqIndent));
    const options = { where: shown, file };
    const helm = document.getIn([...at.source, "helm"], true);
    const source = document.getIn(at.source, true);
    if (isSeq(params)) textEdits.push(appendToCollection(text, params, items, options));
    else if (isMap(helm)) {
      textEdits.push(
        appendToCollection(text, helm, (i) => renderPair("parameters", missing, i, seqIndent), options),
      );
    } else if (helm === undefined && isMap(source)) {
      const helmValue = { parameters: missing };
      textEdits.push(
        appendToCollection(text, source, (i) => renderPair("helm", helmValue, i, seqIndent), options),
      );
    } else {
      throw new TerminalError(
        `${at.subject}: ${[...at.source, "helm"].join(".")} is not a map; fix the file`,
      );
    }
    changes.push(...missing.map((p) => `${shown} ${p.name}: (none) -> ${p.value}`));
  }

  const result = { text: spliceText(text, textEdits), changes };
  const reread = parseYamlDocuments(result.text, file)[at.index];
  const after = reread?.getIn(paramsPath, true);
  for (const [name, value] of wanted) {
    const item = isSeq(after) ? after.items.find((p) => isMap(p) && p.get("name") === name) : undefined;
    expectValue(isMap(item) ? item.get("value") : undefined, value, `${shown} ${name}`, file);
  }
  return result;
}

/**
 * An Argo CD Application with a Helm source: key paths below `helm.valuesObject`, or `helm.parameters` by name
 * (added when missing). Multi-source apps: the source is chosen by `change.source` (repoURL or name).
 */
export function editArgoCdApplication(
  text: string,
  file: string,
  change: ArgoCdApplicationChange,
  image: ImageReference,
): EditResult {
  const documents = parseYamlDocuments(text, file);
  const { index, subject } = documentOfKind(documents, "Application", change.name, file);
  const source = sourcePath(documents[index]!, change, subject);
  const wanted = imageKeyValues(change, image);
  if (change.into === "parameters")
    return editParameters(text, file, { documents, index, source, subject }, wanted);
  return setKeyPaths(
    text,
    file,
    { documents, index, base: [...source, "helm", "valuesObject"], subject },
    wanted,
  );
}
