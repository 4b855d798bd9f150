import { realpath } from "node:fs/promises";
import { isAbsolute, join, normalize, relative, sep } from "node:path";
import { TerminalError } from "../shared/errors.js";

/** Names that may fill a template: Keptn names (lowercase letters, digits, dashes) and a little more, never `/`. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/** Fills {project}, {stage}, {service}; refuses values that could change the shape of a path. */
export function renderTemplate(
  template: string,
  values: Record<"project" | "stage" | "service", string>,
  what: string,
): string {
  return template.replace(/\{(project|stage|service)\}/g, (_, key: "project" | "stage" | "service") => {
    const value = values[key];
    if (!SAFE_NAME.test(value) || value.includes("..")) {
      throw new TerminalError(
        `the ${key} name ${JSON.stringify(value)} cannot be used in the ${what}; names may hold letters, digits, "-", "_" and "." (no "/" or "..")`,
      );
    }
    return value;
  });
}

/**
 * Resolves a repository-relative path inside `root`, refusing anything that would leave it: absolute paths,
 * `..` segments, and symbolic links that point outside the repository.
 */
export async function resolveInsideRepo(root: string, file: string): Promise<string> {
  const normalized = normalize(file);
  if (file.includes("\0") || isAbsolute(file) || normalized === ".." || normalized.startsWith(`..${sep}`)) {
    throw new TerminalError(
      `the file path ${JSON.stringify(file)} leaves the repository; use a path relative to the repository root`,
    );
  }
  const full = join(root, normalized);
  let real: string;
  try {
    real = await realpath(full);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return full;
    throw error;
  }
  const realRoot = await realpath(root);
  const inside = relative(realRoot, real);
  if (inside.startsWith("..") || isAbsolute(inside)) {
    throw new TerminalError(
      `the file ${file} is a link that leads out of the repository; the service only writes inside it`,
    );
  }
  return real;
}
