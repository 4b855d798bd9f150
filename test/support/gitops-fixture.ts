import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

/** A bare GitOps repository in a temporary directory, seeded with one commit on `main`. */
export interface GitopsFixture {
  /** Temporary directory holding everything; `repos/` in it is a project root for `GitHttpServer`. */
  root: string;
  /** `${root}/repos/gitops.git` */
  bareDir: string;
  branch: "main";
  remove(): Promise<void>;
}

export interface GitLogEntry {
  sha: string;
  subject: string;
  /** Message after the subject, without the trailing newline; "" when there is none. */
  body: string;
  /** "Name <email>" */
  author: string;
}

/** Author and date of the seed commit: fixed, so the seed commit has the same SHA on every run. */
export const fixtureAuthor = {
  name: "GitOps Fixture",
  email: "fixture@example.com",
  date: "2024-01-02T03:04:05Z",
};
/** Author of `commitToBare` commits: someone else writing to the repository. */
export const otherWriter = { name: "Another Writer", email: "another-writer@example.com" };

const cartsValues = (
  stage: string,
  replicas: number,
) => `# Values for carts in ${stage} (managed by Keptn via keptn-gitops-service)
replicaCount: ${replicas}
image:
  repository: docker.io/keptnexamples/carts  # the registry path
  tag: "0.13.1"   # bumped by Keptn
  pullPolicy: IfNotPresent
service:
  port: 8080
resources:
  limits:
    memory: 512Mi # keep in sync with the JVM heap
`;

const ordersValues = (
  stage: string,
  replicas: number,
) => `# Values for orders in ${stage} (managed by Keptn via keptn-gitops-service)
replicaCount: ${replicas}

image:
  repository: docker.io/keptnexamples/orders
  # unquoted on purpose: edits must keep the style
  tag: 0.13.1
  pullPolicy: 'IfNotPresent'
service:
  type: ClusterIP
  port: 80
env:
  - name: JAVA_OPTS
    value: "-Xms64m -Xmx128m"
`;

/** A real Helm chart around the values files, so that Argo CD's repo-server can render it in the lab. */
const chart = (name: string) => `apiVersion: v2
name: ${name}
description: ${name} of the sockshop, deployed by Argo CD from this repository
version: 0.1.0
`;

const chartDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ .Chart.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ .Chart.Name }}
    spec:
      containers:
        - name: {{ .Chart.Name }}
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
          imagePullPolicy: {{ .Values.image.pullPolicy }}
`;

const ordersDevDeployment = `# orders in dev: plain manifests; Keptn bumps the orders image, never the sidecar
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
  namespace: sockshop-dev
  labels:
    app.kubernetes.io/name: orders
    app.kubernetes.io/part-of: sockshop
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: orders
  template:
    metadata:
      labels:
        app.kubernetes.io/name: orders
    spec:
      containers:
        - name: orders
          image: docker.io/keptnexamples/orders:0.13.1 # managed by Keptn
          ports:
            - containerPort: 8080
        - name: envoy
          image: envoyproxy/envoy:v1.29.0
          args: ["--config-path", "/etc/envoy/envoy.yaml"]
          ports:
            - containerPort: 9901
`;

const ordersProductionManifests = `# orders in production: Service and Deployment in one file
apiVersion: v1
kind: Service
metadata:
  name: orders
  namespace: sockshop-production
spec:
  selector:
    app.kubernetes.io/name: orders
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
  namespace: sockshop-production
  labels:
    app.kubernetes.io/name: orders
spec:
  replicas: 3
  selector:
    matchLabels:
      app.kubernetes.io/name: orders
  template:
    metadata:
      labels:
        app.kubernetes.io/name: orders
    spec:
      containers:
        - name: orders
          image: "docker.io/keptnexamples/orders:0.13.1"
          ports:
            - containerPort: 8080
`;

const readme = `# sockshop GitOps repository

Desired state of the Keptn project \`sockshop\` (stages \`dev\`, \`production\`), synced by Argo CD.
keptn-gitops-service commits new image tags here when Keptn triggers a deployment.

- \`charts/<service>/values-<stage>.yaml\`: Helm values per service and stage
- \`manifests/<stage>/<service>/\`: plain Kubernetes manifests
`;

/** The seed content: Keptn project `sockshop`, stages `dev` and `production`, services `carts` and `orders`. */
export const defaultGitopsFiles: Readonly<Record<string, string>> = {
  "README.md": readme,
  "charts/carts/Chart.yaml": chart("carts"),
  "charts/carts/templates/deployment.yaml": chartDeployment,
  "charts/orders/Chart.yaml": chart("orders"),
  "charts/orders/templates/deployment.yaml": chartDeployment,
  "charts/carts/values-dev.yaml": cartsValues("dev", 1),
  "charts/carts/values-production.yaml": cartsValues("production", 3),
  "charts/orders/values-dev.yaml": ordersValues("dev", 1),
  "charts/orders/values-production.yaml": ordersValues("production", 2),
  "manifests/dev/orders/deployment.yaml": ordersDevDeployment,
  "manifests/production/orders/deployment.yaml": ordersProductionManifests,
};

/** `svc-01` .. : the services of the burst scenarios (test/e2e/bursts.spec.ts, bench/burst-bench.ts). */
export function burstServices(count: number): string[] {
  const width = String(count).length;
  return Array.from({ length: count }, (_, i) => `svc-${String(i + 1).padStart(Math.max(2, width), "0")}`);
}

/**
 * A chart per service of `burstServices(count)` with its dev values (project `sockshop`, stage `dev`, image
 * `docker.io/keptnexamples/<service>:1.0.0`), for Argo CD applications `<service>-dev` (`burstApplications`).
 */
export function burstGitopsFiles(count: number): Record<string, string> {
  return Object.fromEntries(
    burstServices(count).flatMap((service) => [
      [`charts/${service}/Chart.yaml`, chart(service)],
      [`charts/${service}/templates/deployment.yaml`, chartDeployment],
      [
        `charts/${service}/values-dev.yaml`,
        `# Values for ${service} in dev\nreplicaCount: 1\nimage:\n  repository: docker.io/keptnexamples/${service}\n  tag: "1.0.0" # bumped by Keptn\n  pullPolicy: IfNotPresent\n`,
      ],
    ]),
  );
}

const paymentsValues = (stage: string, postSyncCheck: boolean) => `# Values for payments in ${stage}
replicaCount: 1
image:
  repository: docker.io/keptnexamples/payments
  tag: "1.0.0"
${postSyncCheck ? "# a PostSync hook checks each new image (templates/postsync-check.yaml)\npostSyncCheck: true\n" : ""}`;

/**
 * A PostSync hook, where the values ask for one: a ConfigMap naming the image. The lab's API server refuses it for
 * images tagged with the marker of argocd-lab.ts, so the operation fails after the Deployment was applied. One
 * name per tag: Argo CD deletes a hook of the same name first, and in the lab the sync then stayed at "waiting for
 * completion of hook" for good.
 */
const paymentsPostSyncCheck = `{{- if .Values.postSyncCheck }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-check-{{ .Values.image.tag | replace "." "-" | replace "_" "-" | lower }}
  labels:
    lab.keptn.sh/check: postsync
  annotations:
    argocd.argoproj.io/hook: PostSync
data:
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
{{- end }}
`;

/**
 * Service `payments` of project `sockshop`, for the never-fooled traps (test/e2e/never-fooled.ts): a chart with one
 * values file per stage of PAYMENTS_APPLICATIONS (test/e2e/argocd-backend.ts). Not in the seed commit: the traps
 * commit it, so that no other scenario sees it.
 */
export const paymentsGitopsFiles: Readonly<Record<string, string>> = {
  "charts/payments/Chart.yaml": chart("payments"),
  "charts/payments/templates/deployment.yaml": chartDeployment,
  "charts/payments/templates/postsync-check.yaml": paymentsPostSyncCheck,
  ...Object.fromEntries(
    ["dev", "production", "canary", "qa", "staging"].map((stage) => [
      `charts/payments/values-${stage}.yaml`,
      paymentsValues(stage, stage === "qa"),
    ]),
  ),
};

/**
 * Creates `${root}/repos/gitops.git` (bare, default branch `main`, push over HTTP allowed) holding `files`
 * (default: `defaultGitopsFiles`) in one commit by `fixtureAuthor`.
 */
export async function createGitopsFixture(
  files: Record<string, string> = { ...defaultGitopsFiles },
): Promise<GitopsFixture> {
  const root = await mkdtemp(join(tmpdir(), "gitops-fixture-"));
  const remove = () => rm(root, { recursive: true, force: true });
  try {
    const bareDir = join(root, "repos", "gitops.git");
    await git(["init", "--quiet", "--bare", "--initial-branch=main", bareDir]);
    await git(["--git-dir", bareDir, "config", "http.receivepack", "true"]);

    const seed = join(root, "seed");
    await git(["init", "--quiet", "--initial-branch=main", seed]);
    await writeFiles(seed, files);
    await git(["add", "--all"], { cwd: seed });
    const env = authorEnv(fixtureAuthor.name, fixtureAuthor.email, fixtureAuthor.date);
    await git(["commit", "--quiet", "--allow-empty", "-m", "Initial GitOps layout for sockshop"], {
      cwd: seed,
      env,
    });
    await git(["push", "--quiet", bareDir, "HEAD:refs/heads/main"], { cwd: seed });
    await rm(seed, { recursive: true, force: true });
    return { root, bareDir, branch: "main", remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/**
 * Another writer: clones `bareDir`, writes `files`, commits (even when nothing changed) and pushes to `branch`
 * (default `main`; created from the default branch when missing). Returns the new commit's SHA.
 */
export async function commitToBare(
  bareDir: string,
  files: Record<string, string>,
  message: string,
  opts: { branch?: string } = {},
): Promise<string> {
  const branch = opts.branch ?? "main";
  const work = await mkdtemp(join(tmpdir(), "gitops-writer-"));
  try {
    await git(["clone", "--quiet", bareDir, work]);
    const remoteBranch = `refs/remotes/origin/${branch}`;
    const exists = await git(["rev-parse", "--verify", "--quiet", remoteBranch], { cwd: work }).then(
      () => true,
      () => false,
    );
    await git(
      exists ? ["checkout", "--quiet", "-B", branch, remoteBranch] : ["checkout", "--quiet", "-b", branch],
      {
        cwd: work,
      },
    );
    await writeFiles(work, files);
    await git(["add", "--all"], { cwd: work });
    const env = authorEnv(otherWriter.name, otherWriter.email);
    await git(["commit", "--quiet", "--allow-empty", "-m", message], { cwd: work, env });
    await git(["push", "--quiet", "origin", `HEAD:refs/heads/${branch}`], { cwd: work });
    return (await git(["rev-parse", "HEAD"], { cwd: work })).trim();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The exact content of `path` at `ref` (branch, tag or SHA) in a bare repository. */
export function readFileAt(bareDir: string, ref: string, path: string): Promise<string> {
  return git(["--git-dir", bareDir, "cat-file", "blob", `${ref}:${path}`]);
}

/** Commits reachable from `ref` (default `main`), newest first. */
export async function gitLog(bareDir: string, ref = "main"): Promise<GitLogEntry[]> {
  const out = await git(["--git-dir", bareDir, "log", "--format=%H%x1f%s%x1f%b%x1f%an <%ae>%x1e", ref, "--"]);
  return out
    .split("\x1e")
    .map((record) => record.replace(/^\n/, ""))
    .filter((record) => record.length > 0)
    .map((record) => {
      const [sha = "", subject = "", body = "", author = ""] = record.split("\x1f");
      return { sha, subject, body: body.replace(/\n+$/, ""), author };
    });
}

/** A failed `git` run: exit code, stderr, and the arguments with credentials masked. */
export class GitCommandError extends Error {
  override readonly name = "GitCommandError";

  constructor(
    readonly args: string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    cwd: string | undefined,
    options?: ErrorOptions,
  ) {
    super(
      `git ${args.join(" ")} failed (${exitCode === undefined ? "did not run" : `exit ${exitCode}`})` +
        `${cwd === undefined ? "" : ` in ${cwd}`}: ${stderr.trim() || "(no stderr)"}`,
      options,
    );
  }
}

/**
 * Runs `git` and resolves with its stdout, untrimmed. The environment is hermetic: the caller's GIT_* variables
 * (GIT_DIR from a hook, say) and system/user git config are ignored, and git never prompts for credentials.
 * `opts.env` is added on top.
 */
export function git(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...inheritedEnv(), ...opts.env };
  return new Promise((resolve, reject) => {
    execFile("git", args, { cwd: opts.cwd, env, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) {
        resolve(stdout);
        return;
      }
      const exitCode = typeof error.code === "number" ? error.code : undefined;
      const stderrText = exitCode === undefined ? error.message : stderr;
      reject(new GitCommandError(args.map(redact), exitCode, redact(stderrText), opts.cwd, { cause: error }));
    });
  });
}

function inheritedEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("GIT_") || name.startsWith("GIT_TRACE")) env[name] = value;
  }
  return {
    ...env,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
  };
}

function authorEnv(name: string, email: string, date?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    GIT_AUTHOR_NAME: name,
    GIT_AUTHOR_EMAIL: email,
    GIT_COMMITTER_NAME: name,
    GIT_COMMITTER_EMAIL: email,
  };
  if (date !== undefined) {
    env.GIT_AUTHOR_DATE = date;
    env.GIT_COMMITTER_DATE = date;
  }
  return env;
}

async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const target = join(dir, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, content, "utf8");
  }
}

/** Masks `Authorization: <scheme> <secret>` and `user:secret@` in URLs. */
function redact(text: string): string {
  return text
    .replace(/(authorization:\s*\w+\s+)\S+/gi, "$1***")
    .replace(/(\/\/[^/@\s:]*:)[^@/\s]+@/g, "$1***@");
}
