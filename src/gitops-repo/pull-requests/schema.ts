import { z } from "zod";
import { secretRefSchema } from "../../config/secret-ref.js";
import { durationSchema } from "../../shared/duration.js";
import { branchTemplateProblems, DEFAULT_BRANCH_TEMPLATE } from "./pull-request-text.js";

export const pullRequestModeSchema = z.enum(["wait-for-merge", "auto-merge", "open-only"]);
export type PullRequestMode = z.infer<typeof pullRequestModeSchema>;

/** A branch name with `{project}`, `{stage}` and `{service}`. */
const branchTemplateSchema = z
  .string()
  .min(1)
  .superRefine((template, context) => {
    for (const problem of branchTemplateProblems(template))
      context.addIssue({ code: "custom", message: problem });
  });

export const pullRequestProviderSchema = z.enum(["github", "gitlab"]);

/**
 * `repositories[].pullRequest`: push to a branch of its own and open a pull request (GitHub) or merge request
 * (GitLab) instead of pushing to the target branch.
 */
export const pullRequestConfigSchema = z
  .strictObject({
    /** Which API; default by the host of the repository URL: github.com → github, gitlab.com → gitlab. */
    provider: pullRequestProviderSchema.optional(),
    /**
     * The API root: `https://ghe.example.com/api/v3` (GitHub Enterprise Server), `https://gitlab.example.com/api/v4`.
     * Default: api.github.com / gitlab.com, or `https://<host>/api/v3` / `/api/v4` of the repository's host.
     */
    apiUrl: z.url({ protocol: /^https?$/, error: "give the API root as an http(s) URL" }).optional(),
    /**
     * A token that may open and merge pull requests (GitHub: pull requests read/write; GitLab: `api` scope). Not
     * needed with `auth.githubApp`: the app's installation token is used.
     */
    token: secretRefSchema.optional(),
    /** GitLab only: `private-token` (personal/project/group access tokens) or `bearer` (OAuth tokens). */
    tokenHeader: z.enum(["private-token", "bearer"]).default("private-token"),
    /** The branch of each target; `{project}`, `{stage}` and `{service}` are filled in. */
    branchTemplate: branchTemplateSchema.default(DEFAULT_BRANCH_TEMPLATE),
    /**
     * `wait-for-merge`: the deployment waits until someone merges, then for the sync of the merge commit;
     * `auto-merge`: the same, and the host merges when the checks pass (GitLab only);
     * `open-only`: the deployment finishes (`pass`) once the pull request is open, with its URL in the message.
     */
    mode: pullRequestModeSchema.default("wait-for-merge"),
    /** How the service merges, where it merges (auto-merge): a merge commit or one squashed commit. */
    mergeMethod: z.enum(["merge", "squash"]).default("merge"),
    /** How often a waiting deployment reads its pull request (`wait-for-merge`, `auto-merge`). */
    pollInterval: durationSchema
      .refine((ms) => ms >= 50, 'read the pull request at most every 50ms (e.g. "30s")')
      .default(30_000),
  })
  .superRefine((config, context) => {
    if (config.provider === "github" && config.mode === "auto-merge") {
      context.addIssue({
        code: "custom",
        path: ["mode"],
        message:
          'GitHub\'s REST API cannot turn on auto-merge: use mode "wait-for-merge" (with auto-merge enabled in the repository settings) or "open-only"',
      });
    }
  });

export type PullRequestConfig = z.infer<typeof pullRequestConfigSchema>;

/**
 * `targets[].pullRequest`: `false` pushes this target's changes to the branch even though its repository has
 * `pullRequest`; an object overrides the repository's mode or branch template for this target.
 */
export const targetPullRequestSchema = z.union(
  [
    z.literal(false),
    z.strictObject({
      mode: pullRequestModeSchema.optional(),
      branchTemplate: branchTemplateSchema.optional(),
    }),
  ],
  { error: "targets[].pullRequest is false, or { mode, branchTemplate } to override the repository's" },
);
export type PullRequestConfigInput = z.input<typeof pullRequestConfigSchema>;
