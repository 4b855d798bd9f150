import type { ChangeSpec } from "../../config/schema.js";
import { TerminalError } from "../../shared/errors.js";
import type { ImageReference } from "../image-reference.js";
import {
  applyScalarEdits,
  expectValue,
  parseYaml,
  scalarAt,
  type EditResult,
  type ScalarEdit,
} from "./yaml-scalar.js";

type HelmValuesChange = Extract<ChangeSpec, { kind: "helm-values" }>;

/** The values each configured key path gets from the image reference. */
function wantedValues(change: HelmValuesChange, image: ImageReference): Array<[string, string]> {
  const wanted: Array<[string, string]> = [];
  if (change.reference) wanted.push([change.reference, image.reference]);
  if (change.repository) wanted.push([change.repository, image.repository]);
  if (change.tag) {
    if (image.digest && !change.reference) {
      throw new TerminalError(
        `the image ${image.reference} is pinned by digest, but the target writes only the tag to ${change.tag}; send the image without a digest, or set change.reference to write the whole reference`,
      );
    }
    if (!image.tag) {
      throw new TerminalError(
        `the image ${image.reference} has no tag, but the target writes ${change.tag}; send an image with a :tag`,
      );
    }
    wanted.push([change.tag, image.tag]);
  }
  return wanted;
}

/** Helm values by key path: `image.tag`, `image.repository` + `image.tag`, or the whole reference in one key. */
export function editHelmValues(
  text: string,
  file: string,
  change: HelmValuesChange,
  image: ImageReference,
): EditResult {
  const document = parseYaml(text, file);
  const wanted = wantedValues(change, image);
  const edits: ScalarEdit[] = wanted.map(([keyPath, value]) => ({
    node: scalarAt(document, keyPath, file),
    value,
    where: keyPath,
  }));
  const result = applyScalarEdits(text, edits, file);
  const reread = parseYaml(result.text, file);
  for (const [keyPath, value] of wanted) expectValue(reread.getIn(keyPath.split(".")), value, keyPath, file);
  return result;
}
