import { z } from "zod";

/**
 * Where a secret comes from. Secrets never sit in the YAML itself: only the name of an environment variable or
 * the path of a file (a mounted Kubernetes Secret) does. In a file of its own so that the schemas of adapter
 * folders (`gitops-repo/pull-requests/schema.ts`) can use it while `schema.ts` uses theirs.
 */
export const secretRefSchema = z.union(
  [z.strictObject({ fromEnv: z.string().min(1) }), z.strictObject({ fromFile: z.string().min(1) })],
  { error: "give the secret as { fromEnv: VARIABLE } or { fromFile: /path }; secrets never go in this file" },
);
export type SecretRef = z.infer<typeof secretRefSchema>;
