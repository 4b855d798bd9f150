import type { ChangeSpec } from "../../config/schema.js";
import type { ImageReference } from "../image-reference.js";
import { editHelmValues } from "./helm-values-editor.js";
import { editManifestImage } from "./manifest-image-editor.js";
import type { EditResult } from "./yaml-scalar.js";

export type { EditResult } from "./yaml-scalar.js";

type Editor<K extends ChangeSpec["kind"]> = (
  text: string,
  file: string,
  change: Extract<ChangeSpec, { kind: K }>,
  image: ImageReference,
) => EditResult;

/** Every file shape the service can edit, by the `change.kind` of a target. Pure functions: text in, text out. */
export const EDITORS: { [K in ChangeSpec["kind"]]: Editor<K> } = {
  "helm-values": editHelmValues,
  "manifest-image": editManifestImage,
};

export function editFile(text: string, file: string, change: ChangeSpec, image: ImageReference): EditResult {
  const editor = EDITORS[change.kind] as Editor<typeof change.kind>;
  return editor(text, file, change as never, image);
}
