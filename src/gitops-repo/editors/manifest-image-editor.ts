import { isMap, isScalar, isSeq, parseAllDocuments, type Document, type Scalar } from "yaml";
import type { ChangeSpec } from "../../config/schema.js";
import { TerminalError } from "../../shared/errors.js";
import { repositoryOf, type ImageReference } from "../image-reference.js";
import {
  applyScalarEdits,
  assertYamlValid,
  expectValue,
  type EditResult,
  type ScalarEdit,
} from "./yaml-scalar.js";

type ManifestImageChange = Extract<ChangeSpec, { kind: "manifest-image" }>;

/** Where each workload kind keeps its pod spec. */
const POD_SPEC_PATHS: Record<string, string[]> = {
  Deployment: ["spec", "template", "spec"],
  StatefulSet: ["spec", "template", "spec"],
  DaemonSet: ["spec", "template", "spec"],
  ReplicaSet: ["spec", "template", "spec"],
  Job: ["spec", "template", "spec"],
  CronJob: ["spec", "jobTemplate", "spec", "template", "spec"],
  Pod: ["spec"],
};

interface ContainerImage {
  where: string;
  name: string;
  node: Scalar;
}

function containerImages(document: Document.Parsed, index: number): ContainerImage[] {
  const kind = document.get("kind");
  const podSpecPath = typeof kind === "string" ? POD_SPEC_PATHS[kind] : undefined;
  if (!podSpecPath) return [];
  const name = String(document.getIn(["metadata", "name"]) ?? `document ${index + 1}`);
  const found: ContainerImage[] = [];
  for (const list of ["initContainers", "containers"]) {
    const containers = document.getIn([...podSpecPath, list], true);
    if (!isSeq(containers)) continue;
    for (const container of containers.items) {
      if (!isMap(container)) continue;
      const image = container.get("image", true);
      if (!isScalar(image)) continue;
      const containerName = String(container.get("name") ?? "");
      found.push({ where: `${kind}/${name} container ${containerName}`, name: containerName, node: image });
    }
  }
  return found;
}

/**
 * The image of a named container (or of every container running the same repository) in Deployments,
 * StatefulSets, DaemonSets, Jobs, CronJobs and Pods; multi-document files included.
 */
export function editManifestImage(
  text: string,
  file: string,
  change: ManifestImageChange,
  image: ImageReference,
): EditResult {
  const documents = parseAllDocuments(text) as Document.Parsed[];
  documents.forEach((document) => assertYamlValid(document, file));
  const all = documents.flatMap((d, i) => containerImages(d, i));
  const selected = change.container
    ? all.filter((c) => c.name === change.container)
    : all.filter((c) => repositoryOf(String(c.node.value)) === image.repository);
  if (selected.length === 0) {
    const seen = all.map((c) => `${c.name} (${String(c.node.value)})`).join(", ") || "no containers";
    const wanted = change.container
      ? `container named ${change.container}`
      : `container running ${image.repository}`;
    throw new TerminalError(
      `${file} has no ${wanted} (found: ${seen}); fix the target's change.container or the file`,
    );
  }
  const edits: ScalarEdit[] = selected.map((c) => ({ node: c.node, value: image.reference, where: c.where }));
  const result = applyScalarEdits(text, edits, file);
  const reread = parseAllDocuments(result.text) as Document.Parsed[];
  const after = reread.flatMap((d, i) => containerImages(d, i));
  for (const edit of edits) {
    expectValue(after.find((c) => c.where === edit.where)?.node.value, edit.value, edit.where, file);
  }
  return result;
}
