/**
 * The words of a pull request: the branch it comes from, its title and its body. Pure functions of the Keptn
 * fields, so the same deployment always gets the same branch (and so updates its own open pull request).
 */

export const DEFAULT_BRANCH_TEMPLATE = "keptn/{project}/{stage}/{service}";

/** The placeholders of `pullRequest.branchTemplate`. */
export const BRANCH_FIELDS = ["project", "stage", "service"] as const;
export type BranchFields = Record<(typeof BRANCH_FIELDS)[number], string>;

/** GitHub allows 256 characters in a title, GitLab 255. */
const MAX_TITLE_LENGTH = 255;

const PLACEHOLDER = /\{([a-zA-Z]+)\}/g;

/** What is wrong with a branch template; empty when it is fine. */
export function branchTemplateProblems(template: string): string[] {
  const problems: string[] = [];
  const unknown = [...template.matchAll(PLACEHOLDER)]
    .map((match) => match[1]!)
    .filter((name) => !(BRANCH_FIELDS as readonly string[]).includes(name));
  if (unknown.length > 0) problems.push(`unknown placeholders ${unknown.map((n) => `{${n}}`).join(", ")}`);
  for (const needed of ["stage", "service"]) {
    if (!template.includes(`{${needed}}`)) {
      problems.push(`{${needed}} is missing: every stage and service needs a branch of its own`);
    }
  }
  const sample = template.replace(PLACEHOLDER, "x");
  if (!isValidBranchName(sample)) problems.push(`"${template}" does not make a valid git branch name`);
  return problems;
}

/**
 * The branch of one target: the template with the fields filled in. A field never adds a `/` or anything git
 * refuses in a ref name (`..`, `~^:?*[\`, spaces, a leading `.` or `-`): those become `-`.
 */
export function pullRequestBranch(template: string, fields: BranchFields): string {
  const branch = template.replace(PLACEHOLDER, (whole, name: string) =>
    name in fields ? refComponent(fields[name as keyof BranchFields]) : whole,
  );
  if (!isValidBranchName(branch)) {
    throw new Error(
      `the branch template "${template}" made "${branch}", which is not a valid git branch name`,
    );
  }
  return branch;
}

function refComponent(value: string): string {
  const cleaned = value
    .replace(/[^A-Za-z0-9._-]+/g, "-")
    .replace(/\.{2,}/g, ".")
    .replace(/^[.-]+/, "")
    .replace(/(\.lock|\.)+$/i, "");
  return cleaned.length > 0 ? cleaned : "_";
}

/** The rules of `git check-ref-format --branch` that a generated name can break. */
export function isValidBranchName(name: string): boolean {
  if (name.length === 0 || name === "@" || name.startsWith("-") || name.startsWith("/")) return false;
  if (name.endsWith("/") || name.endsWith(".") || name.includes("//") || name.includes("..")) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(name) || name.includes("@{")) return false;
  return name.split("/").every((part) => !part.startsWith(".") && !part.toLowerCase().endsWith(".lock"));
}

/** One file the deployment changed, with the changes as the editors describe them (`image.tag: 1 -> 2`). */
export interface ChangedFile {
  file: string;
  changes: string[];
}

export interface PullRequestContext {
  project: string;
  stage: string;
  service: string;
  /** The image Keptn asked for; absent when the event carries only `configurationChange.values`. */
  image?: string;
  shkeptncontext: string;
  triggeredId: string;
  files: ChangedFile[];
  labels?: Record<string, string>;
  /** Keptn's Bridge, e.g. `https://keptn.example.com/bridge`: the context becomes a link to the sequence. */
  bridgeUrl?: string;
  /** What the service does after opening, said at the end of the body. */
  mode?: "wait-for-merge" | "auto-merge" | "open-only";
}

/** `Deploy carts docker.io/keptnexamples/carts:0.13.3 to sockshop/dev`: the subject of the commit, too. */
export function pullRequestTitle(context: PullRequestContext): string {
  const { project, stage, service, image } = context;
  const count = context.files.reduce((sum, file) => sum + file.changes.length, 0);
  const title = image
    ? `Deploy ${service} ${image} to ${project}/${stage}`
    : `Deploy ${service} to ${project}/${stage} (${count} ${count === 1 ? "value" : "values"} changed)`;
  return title.length <= MAX_TITLE_LENGTH ? title : `${title.slice(0, MAX_TITLE_LENGTH - 1)}…`;
}

const MODE_NOTES: Record<NonNullable<PullRequestContext["mode"]>, string> = {
  "wait-for-merge":
    "Keptn waits for this pull request: merging it deploys the change, closing it without merging fails the deployment.",
  "auto-merge":
    "This pull request merges itself when the checks pass; closing it without merging fails the deployment.",
  "open-only":
    "Keptn did not wait for this pull request: the deployment was reported as done when it was opened.",
};

/**
 * Markdown that says what changes and why: the values per file, then the Keptn context. The last lines are the
 * same trailers as in the commit message, so the pull request can be found from the event and back.
 */
export function pullRequestBody(context: PullRequestContext): string {
  const { project, stage, service, image, shkeptncontext, triggeredId } = context;
  const lines = [
    `Keptn asked for a deployment of service **${service}** in stage **${stage}** of project **${project}**.`,
    "",
  ];
  if (image) lines.push(`Image: ${code(image)}`, "");
  lines.push("### Changes", "");
  for (const file of context.files) {
    lines.push(`${code(file.file)}:`, "");
    for (const change of file.changes) lines.push(`- ${code(change)}`);
    lines.push("");
  }
  const contextCell = context.bridgeUrl
    ? `[${code(shkeptncontext)}](${context.bridgeUrl.replace(/\/+$/, "")}/trace/${encodeURIComponent(shkeptncontext)})`
    : code(shkeptncontext);
  lines.push(
    "### Keptn",
    "",
    "| | |",
    "| --- | --- |",
    `| Project | ${cell(project)} |`,
    `| Stage | ${cell(stage)} |`,
    `| Service | ${cell(service)} |`,
    `| Context | ${contextCell} |`,
    `| Triggered event | ${code(triggeredId)} |`,
  );
  const labels = Object.entries(context.labels ?? {}).sort(([a], [b]) => a.localeCompare(b));
  for (const [name, value] of labels) lines.push(`| Label ${cell(name)} | ${cell(value)} |`);
  lines.push("");
  if (context.mode) lines.push(MODE_NOTES[context.mode], "");
  lines.push(`Keptn-Context: ${shkeptncontext}`, `Keptn-Triggered-Id: ${triggeredId}`, "");
  return lines.join("\n");
}

/** A Markdown code span that survives backticks in the value. */
function code(value: string): string {
  const longest = Math.max(0, ...[...value.matchAll(/`+/g)].map((match) => match[0].length));
  const fence = "`".repeat(longest + 1);
  const pad = value.startsWith("`") || value.endsWith("`") ? " " : "";
  return `${fence}${pad}${value}${pad}${fence}`;
}

/** Table cells: a `|` or a line break would end the cell. */
function cell(value: string): string {
  return value.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");
}
