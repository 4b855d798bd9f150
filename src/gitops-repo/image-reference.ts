import { TerminalError } from "../shared/errors.js";

/** An OCI image reference split the way Helm charts usually store it. */
export interface ImageReference {
  /** As given, e.g. `docker.io/keptnexamples/carts:0.13.3`. */
  reference: string;
  /** Everything before the tag and digest, registry included: `docker.io/keptnexamples/carts`. */
  repository: string;
  tag?: string;
  /** `sha256:<hex>` when the reference is pinned by digest. */
  digest?: string;
}

const REFERENCE =
  /^(?<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)(?::(?<tag>[\w][\w.-]{0,127}))?(?:@(?<digest>[a-z0-9]+:[a-f0-9]{32,}))?$/;

/**
 * Parses `[registry[:port]/]path[:tag][@digest]` (the distribution reference grammar, lowercase repository).
 * A registry with a port (`localhost:5000/app`) is told from a tag because a tag never contains `/`.
 */
export function parseImageReference(text: string): ImageReference {
  const match = REFERENCE.exec(text.trim());
  if (!match?.groups?.["repository"]) {
    throw new TerminalError(
      `"${text}" is not a valid image reference; expected e.g. docker.io/org/app:1.2.3 in configurationChange.values.image`,
    );
  }
  const { repository, tag, digest } = match.groups;
  return { reference: text.trim(), repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** `repository:tag` of an image as written in a manifest, for comparing repositories. */
export function repositoryOf(image: string): string {
  try {
    return parseImageReference(image).repository;
  } catch {
    return image;
  }
}
