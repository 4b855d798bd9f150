import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const DOCS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "docs", "notifications.md");

/**
 * The first YAML document in docs/notifications.md whose kind and name are these: the lab applies what the docs
 * tell users to paste, so the docs are tested.
 */
export async function documented(kind: string, name: string): Promise<Record<string, unknown>> {
  const text = await readFile(DOCS, "utf8");
  for (const [, block] of text.matchAll(/```yaml\n([\s\S]*?)```/g)) {
    for (const document of parseAllDocuments(block!)) {
      const object = document.toJS() as { kind?: string; metadata?: { name?: string } } | null;
      if (object?.kind === kind && object.metadata?.name === name) return object as Record<string, unknown>;
    }
  }
  throw new Error(`docs/notifications.md has no ${kind} ${name}`);
}
