import type { ChangeSpec } from "../../config/schema.js";
import type { ImageReference } from "../image-reference.js";
import { imageKeyValues } from "./image-keys.js";
import { setKeyPaths } from "./yaml-documents.js";
import { parseYaml, type EditResult } from "./yaml-scalar.js";

type HelmValuesChange = Extract<ChangeSpec, { kind: "helm-values" }>;

/**
 * Helm values by key path: `image.tag`, `image.repository` + `image.tag`, the registry, the digest, or the whole
 * reference in one key.
 */
export function editHelmValues(
  text: string,
  file: string,
  change: HelmValuesChange,
  image: ImageReference,
): EditResult {
  const document = parseYaml(text, file);
  const wanted = imageKeyValues(change, image);
  return setKeyPaths(text, file, { documents: [document], index: 0, base: [], subject: file }, wanted);
}
