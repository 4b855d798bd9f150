import { TerminalError } from "../../shared/errors.js";
import type { ImageReference } from "../image-reference.js";

/** Key paths that get parts of the image: the keys of `helm-values`, `helmrelease-values`, `argocd-application`. */
export interface ImageKeys {
  reference?: string | undefined;
  registry?: string | undefined;
  repository?: string | undefined;
  tag?: string | undefined;
  digest?: string | undefined;
}

/**
 * Splits a repository into its registry and the path on it. A first component with a `.` or `:`, or
 * `localhost`, is a registry host; without one the image is on Docker Hub, `docker.io`.
 */
export function splitRegistry(repository: string): { registry: string; path: string } {
  const slash = repository.indexOf("/");
  const first = slash < 0 ? "" : repository.slice(0, slash);
  if (first && (first.includes(".") || first.includes(":") || first === "localhost")) {
    return { registry: first, path: repository.slice(slash + 1) };
  }
  return { registry: "docker.io", path: repository };
}

/** The value each configured key path gets from the image, in the order reference, registry, repository, tag, digest. */
export function imageKeyValues(keys: ImageKeys, image: ImageReference): Array<[string, string]> {
  const wanted: Array<[string, string]> = [];
  const split = splitRegistry(image.repository);
  if (keys.reference) wanted.push([keys.reference, image.reference]);
  if (keys.registry) wanted.push([keys.registry, split.registry]);
  if (keys.repository) wanted.push([keys.repository, keys.registry ? split.path : image.repository]);
  if (keys.tag) {
    if (image.digest && !keys.reference && !keys.digest) {
      throw new TerminalError(
        `the image ${image.reference} is pinned by digest, but the target writes only the tag to ${keys.tag}; send the image without a digest, or set change.digest (or change.reference) to write the digest too`,
      );
    }
    if (image.tag) wanted.push([keys.tag, image.tag]);
    else if (!(keys.digest && image.digest)) {
      throw new TerminalError(
        `the image ${image.reference} has no tag, but the target writes ${keys.tag}; send an image with a :tag`,
      );
    }
  }
  // An image without a digest clears the digest key: an old digest would otherwise keep the old image running.
  if (keys.digest) wanted.push([keys.digest, image.digest ?? ""]);
  return wanted;
}
