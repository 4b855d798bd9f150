import type { ChangeSpec } from "../../config/schema.js";
import type { ImageReference } from "../image-reference.js";
import { editArgoCdApplication } from "./argocd-application-editor.js";
import { editHelmReleaseValues } from "./helmrelease-values-editor.js";
import { editHelmValues } from "./helm-values-editor.js";
import { editKustomizeImages } from "./kustomize-images-editor.js";
import { editManifestImage } from "./manifest-image-editor.js";
import { editValuesMerge } from "./values-merge-editor.js";
import type { EditResult } from "./yaml-scalar.js";

export type { EditResult } from "./yaml-scalar.js";

/** What a deployment brings to an edit: the image (when the event has one) and all of `configurationChange.values`. */
export interface EditInput {
  image?: ImageReference | undefined;
  values: Record<string, unknown>;
}

/** An input whose image is there: what the editors of kinds that write an image get. */
export type ImageInput = EditInput & { image: ImageReference };

type Change<K extends ChangeSpec["kind"]> = Extract<ChangeSpec, { kind: K }>;

interface EditorEntry<K extends ChangeSpec["kind"]> {
  /** Kinds that write the image need one; the deployment is answered errored before any git work without it. */
  needsImage: boolean;
  edit: (text: string, file: string, change: Change<K>, input: ImageInput) => EditResult;
}

/** Every file shape the service can edit, by the `change.kind` of a target. Pure functions: text in, text out. */
export const EDITORS: { [K in ChangeSpec["kind"]]: EditorEntry<K> } = {
  "helm-values": { needsImage: true, edit: (t, f, c, i) => editHelmValues(t, f, c, i.image) },
  "manifest-image": { needsImage: true, edit: (t, f, c, i) => editManifestImage(t, f, c, i.image) },
  "kustomize-images": { needsImage: true, edit: (t, f, c, i) => editKustomizeImages(t, f, c, i.image) },
  "helmrelease-values": { needsImage: true, edit: (t, f, c, i) => editHelmReleaseValues(t, f, c, i.image) },
  "argocd-application": { needsImage: true, edit: (t, f, c, i) => editArgoCdApplication(t, f, c, i.image) },
  "values-merge": { needsImage: false, edit: (t, f, c, i) => editValuesMerge(t, f, c, i.values) },
};

export function needsImage(change: ChangeSpec): boolean {
  return EDITORS[change.kind].needsImage;
}

/** Runs the editor of `change.kind` on the deployment's image and values. */
export function editFile(text: string, file: string, change: ChangeSpec, input: EditInput): EditResult {
  const { image, values } = input;
  const entry = EDITORS[change.kind] as EditorEntry<typeof change.kind>;
  if (entry.needsImage && !image) {
    throw new Error(`the ${change.kind} editor needs an image; the deployment handler checks this before`);
  }
  return entry.edit(text, file, change as never, { image: image as ImageReference, values });
}
