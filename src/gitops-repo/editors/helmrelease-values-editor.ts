import type { ChangeSpec } from "../../config/schema.js";
import type { ImageReference } from "../image-reference.js";
import { imageKeyValues } from "./image-keys.js";
import { documentOfKind, parseYamlDocuments, setKeyPaths } from "./yaml-documents.js";
import type { EditResult } from "./yaml-scalar.js";

type HelmReleaseValuesChange = Extract<ChangeSpec, { kind: "helmrelease-values" }>;

/**
 * A Flux HelmRelease's inline values: key paths below `spec.values`, the same keys as `helm-values`. The file may
 * hold other objects too (`---`); `change.name` picks the HelmRelease when it holds several.
 */
export function editHelmReleaseValues(
  text: string,
  file: string,
  change: HelmReleaseValuesChange,
  image: ImageReference,
): EditResult {
  const documents = parseYamlDocuments(text, file);
  const { index, subject } = documentOfKind(documents, "HelmRelease", change.name, file);
  const wanted = imageKeyValues(change, image);
  return setKeyPaths(text, file, { documents, index, base: ["spec", "values"], subject }, wanted);
}
