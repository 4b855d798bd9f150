import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { promisify } from "node:util";
import { expect } from "chai";
import { ArgoCdSimulator } from "./argocd-simulator.js";
import type { ArgoCdSimulatorOptions, SettledEvent, SimulatedApp } from "./argocd-simulator.js";

const execFileAsync = promisify(execFile);
const TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzaW0ifQ.c2ltLXRva2Vu";
const FAST = { pollIntervalMs: 40, syncDurationMs: 40, healthDelayMs: 40 } as const;
const RFC3339_SECONDS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

/** The parts of the Application JSON these tests read. */
interface AppView {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: { source: { repoURL: string; path: string; targetRevision: string }; syncPolicy?: unknown };
  status: {
    sync: { status: string; revision?: string };
    health: { status?: string; message?: string; lastTransitionTime?: string };
    operationState?: {
      phase: string;
      message?: string;
      startedAt: string;
      finishedAt?: string;
      operation: { sync: { revision: string }; initiatedBy: { username?: string; automated?: boolean } };
      syncResult?: { revision: string; resources?: Array<{ kind: string; status: string; message: string }> };
    };
    history?: Array<{ id: number; revision: string; deployStartedAt: string; deployedAt: string }>;
    conditions?: Array<{ type: string; message: string; lastTransitionTime: string }>;
    reconciledAt?: string;
    summary?: { images?: string[] };
    resources?: Array<{ kind: string; name: string; status: string; health: { status: string } }>;
  };
  operation?: { sync: { revision: string }; initiatedBy: { username?: string; automated?: boolean } };
}

interface ApiAnswer<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

/** A real bare repo plus a work clone that commits and pushes to it by file path. */
class GitRemote {
  private constructor(
    readonly root: string,
    readonly bare: string,
    readonly work: string,
  ) {}

  static async create(): Promise<GitRemote> {
    const root = await mkdtemp(join(tmpdir(), "argocd-sim-"));
    const bare = join(root, "gitops.git");
    const work = join(root, "work");
    await git(root, ["init", "--quiet", "--bare", "--initial-branch=main", bare]);
    await git(root, ["clone", "--quiet", bare, work]);
    return new GitRemote(root, bare, work);
  }

  /** Writes the files, commits and pushes to `branch`; returns the new commit SHA. */
  async push(files: Record<string, string>, message: string, branch = "main"): Promise<string> {
    for (const [path, content] of Object.entries(files)) {
      await mkdir(dirname(join(this.work, path)), { recursive: true });
      await writeFile(join(this.work, path), content);
    }
    await git(this.work, ["add", "--all"]);
    await git(this.work, ["commit", "--quiet", "--allow-empty", "-m", message]);
    await git(this.work, ["push", "--quiet", "origin", `HEAD:refs/heads/${branch}`]);
    return (await git(this.work, ["rev-parse", "HEAD"])).trim();
  }

  async remove(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}

async function git(cwd: string, args: string[]): Promise<string> {
  const env = { ...process.env };
  for (const key of ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"]) delete env[key];
  const identity = ["-c", "user.name=Simulator Test", "-c", "user.email=sim@example.invalid"];
  const { stdout } = await execFileAsync(
    "git",
    [...identity, "-c", "commit.gpgsign=false", "-C", cwd, ...args],
    {
      env,
    },
  );
  return stdout;
}

function deployment(name: string, image: string): string {
  return [
    "apiVersion: apps/v1",
    "kind: Deployment",
    "metadata:",
    `  name: ${name}`,
    "  annotations:",
    "    kubernetes.io/change-cause: image change", // contains 'hang' inside a word: must not hang
    "spec:",
    "  template:",
    "    spec:",
    "      containers:",
    `        - name: ${name}`,
    `          image: ${image}`,
    "",
  ].join("\n");
}

async function api<T = AppView>(
  sim: ArgoCdSimulator,
  path: string,
  options: { method?: string; body?: unknown; token?: string | null; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> {
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? TOKEN : options.token;
  if (token !== null) headers["authorization"] = `Bearer ${token}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${sim.url}${path}`, {
    method: options.method ?? "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as T };
}

async function getApp(sim: ArgoCdSimulator, name: string, query = ""): Promise<AppView> {
  const answer = await api(sim, `/api/v1/applications/${name}${query}`);
  expect(answer.status, JSON.stringify(answer.body)).to.equal(200);
  return answer.body;
}

/** Polls `probe` until it returns a value, within a bounded deadline. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(15);
  }
}

async function waitForApp(sim: ArgoCdSimulator, name: string, what: string, ok: (app: AppView) => boolean) {
  let last: AppView | undefined;
  try {
    return await waitFor(what, async () => {
      last = await getApp(sim, name);
      return ok(last) ? last : undefined;
    });
  } catch (error) {
    throw new Error(`${(error as Error).message}; last seen: ${JSON.stringify(last?.status)}`, {
      cause: error,
    });
  }
}

/** Resolves with the "settled" event for (app, revision); subscribe before triggering the change. */
function settled(
  sim: ArgoCdSimulator,
  app: string,
  revision: string,
  timeoutMs = 5000,
): Promise<SettledEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sim.off("settled", listener);
      reject(new Error(`no "settled" event for ${app}@${revision} within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (event: SettledEvent) => {
      if (event.app !== app || event.revision !== revision) return;
      clearTimeout(timer);
      sim.off("settled", listener);
      resolve(event);
    };
    sim.on("settled", listener);
  });
}

/** Every value is JSON without nulls, every time field RFC3339 with whole seconds (encoding/json of metav1.Time). */
function expectGoJsonShape(value: unknown, path = "$"): void {
  expect(value, path).to.not.equal(null);
  if (Array.isArray(value)) {
    value.forEach((item, index) => expectGoJsonShape(item, `${path}[${index}]`));
  } else if (typeof value === "object" && value !== null) {
    for (const [key, child] of Object.entries(value)) {
      if (/(At|Time|Timestamp)$/.test(key)) expect(child, `${path}.${key}`).to.match(RFC3339_SECONDS);
      expectGoJsonShape(child, `${path}.${key}`);
    }
  }
}

// property names of the swagger definitions (assets/swagger.json, see argocd-swagger-subset.json)
const SWAGGER_KEYS = {
  application: ["metadata", "operation", "spec", "status"],
  status: [
    "conditions",
    "controllerNamespace",
    "health",
    "history",
    "observedAt",
    "operationState",
    "reconciledAt",
    "resourceHealthSource",
    "resources",
    "sourceHydrator",
    "sourceType",
    "sourceTypes",
    "summary",
    "sync",
  ],
  operationState: ["finishedAt", "message", "operation", "phase", "retryCount", "startedAt", "syncResult"],
  syncResult: ["managedNamespaceMetadata", "resources", "revision", "revisions", "source", "sources"],
  history: [
    "deployStartedAt",
    "deployedAt",
    "id",
    "initiatedBy",
    "revision",
    "revisions",
    "source",
    "sources",
  ],
};

describe("ArgoCdSimulator", function () {
  this.timeout(8000);

  const remotes: GitRemote[] = [];
  const sims: ArgoCdSimulator[] = [];

  async function newRemote(): Promise<GitRemote> {
    const remote = await GitRemote.create();
    remotes.push(remote);
    return remote;
  }

  function appFor(remote: GitRemote, overrides: Partial<SimulatedApp> = {}): SimulatedApp {
    return {
      name: "podtato",
      repoURL: "http://git.example.test/gitops.git",
      gitDir: remote.bare,
      path: "apps/podtato",
      ...overrides,
    };
  }

  async function startSim(options: Partial<ArgoCdSimulatorOptions> & { apps: SimulatedApp[] }) {
    const sim = new ArgoCdSimulator({ token: TOKEN, ...FAST, ...options });
    sims.push(sim);
    await sim.start();
    return sim;
  }

  afterEach(async () => {
    for (const sim of sims.splice(0)) {
      expect(sim.errors, "internal simulator errors").to.deep.equal([]);
      await sim.stop();
    }
    for (const remote of remotes.splice(0)) await remote.remove();
  });

  describe("automated sync", () => {
    it("syncs a pushed commit and reports Synced/Healthy at exactly that SHA", async () => {
      const remote = await newRemote();
      const first = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      const sim = new ArgoCdSimulator({ token: TOKEN, ...FAST, apps: [appFor(remote)] });
      sims.push(sim);
      const firstSettled = settled(sim, "podtato", first);
      await sim.start();
      expect((await firstSettled).health).to.equal("Healthy");

      const second = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v2") },
        "v2",
      );
      const event = await settled(sim, "podtato", second);
      expect(event).to.include({ app: "podtato", revision: second, phase: "Succeeded", health: "Healthy" });

      // Synced comes with the comparison after the operation, as in the real controller.
      const app = await waitForApp(
        sim,
        "podtato",
        "Synced at the second commit",
        (view) => view.status.sync.status === "Synced" && view.status.sync.revision === second,
      );
      expect(app.status.sync).to.include({ status: "Synced", revision: second });
      expect(app.status.health.status).to.equal("Healthy");
      const op = app.status.operationState;
      expect(op?.phase).to.equal("Succeeded");
      expect(op?.message).to.equal("successfully synced (all tasks run)");
      expect(op?.syncResult?.revision).to.equal(second);
      expect(op?.operation.sync.revision).to.equal(second);
      expect(op?.operation.initiatedBy).to.deep.equal({ automated: true });
      expect(op?.finishedAt).to.match(RFC3339_SECONDS);
      expect(app.operation, "top-level operation is removed once completed").to.equal(undefined);
      expect(app.status.history?.map((h) => [h.id, h.revision])).to.deep.equal([
        [0, first],
        [1, second],
      ]);
      expect(app.status.summary?.images).to.deep.equal(["podtato:v2"]);
      expect(app.status.resources?.[0]).to.deep.include({
        kind: "Deployment",
        name: "podtato",
        status: "Synced",
      });

      expectGoJsonShape(app);
      expect(SWAGGER_KEYS.application).to.include.members(Object.keys(app));
      expect(SWAGGER_KEYS.status).to.include.members(Object.keys(app.status));
      expect(SWAGGER_KEYS.operationState).to.include.members(Object.keys(op ?? {}));
      expect(SWAGGER_KEYS.syncResult).to.include.members(Object.keys(op?.syncResult ?? {}));
      expect(SWAGGER_KEYS.history).to.include.members(Object.keys(app.status.history?.[0] ?? {}));
    });

    it("ends Degraded for a crashloop commit", async () => {
      const remote = await newRemote();
      const sha = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:crashloop") },
        "bad",
      );
      const sim = new ArgoCdSimulator({ token: TOKEN, ...FAST, apps: [appFor(remote)] });
      sims.push(sim);
      const done = settled(sim, "podtato", sha);
      await sim.start();
      expect(await done).to.include({ phase: "Succeeded", health: "Degraded" });

      const app = await waitForApp(
        sim,
        "podtato",
        "Synced at the crashloop commit",
        (view) => view.status.sync.status === "Synced" && view.status.sync.revision === sha,
      );
      expect(app.status.health.status).to.equal("Degraded");
      expect(app.status.health.message).to.equal('Deployment "podtato" exceeded its progress deadline');
      expect(app.status.operationState).to.deep.include({ phase: "Succeeded" });
      expect(app.status.sync).to.include({ status: "Synced", revision: sha });
    });

    it("ends phase Failed for a syncfail commit, does not retry that revision, and recovers on the next commit", async () => {
      const remote = await newRemote();
      const good = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "good",
      );
      // retry.limit 0: no retries (without a policy Argo CD v3 retries automated syncs 5 times; the shared
      // Argo CD behaviour suite pins that)
      const sim = new ArgoCdSimulator({
        token: TOKEN,
        ...FAST,
        apps: [appFor(remote, { retry: { limit: 0 } })],
      });
      sims.push(sim);
      const goodSettled = settled(sim, "podtato", good);
      await sim.start();
      await goodSettled;

      const bad = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:syncfail") },
        "x",
      );
      expect(await settled(sim, "podtato", bad)).to.include({ phase: "Failed", health: "Healthy" });

      const failed = await waitForApp(sim, "podtato", "a SyncError condition", (app) =>
        (app.status.conditions ?? []).some((c) => c.type === "SyncError"),
      );
      const op = failed.status.operationState;
      expect(op?.phase).to.equal("Failed");
      expect(op?.message).to.match(
        /^one or more objects failed to apply, reason: Deployment.apps "podtato" is invalid/,
      );
      expect(op?.syncResult?.revision).to.equal(bad);
      expect(op?.syncResult?.resources?.[0]).to.include({ kind: "Deployment", status: "SyncFailed" });
      expect(op?.finishedAt).to.match(RFC3339_SECONDS);
      expect(failed.status.sync).to.include({ status: "OutOfSync", revision: bad });
      expect(failed.status.history?.map((h) => h.revision)).to.deep.equal([good]);
      expect(failed.status.conditions?.find((c) => c.type === "SyncError")?.message).to.equal(
        `Failed last sync attempt to [${bad}]: ${op?.message ?? ""}`,
      );

      // several more comparisons with git: still no new operation for the failed revision
      const again = await getApp(sim, "podtato", "?refresh=normal");
      const again2 = await getApp(sim, "podtato", "?refresh=normal");
      for (const app of [again, again2]) {
        expect(app.operation).to.equal(undefined);
        expect(app.status.operationState?.startedAt).to.equal(op?.startedAt);
        expect(app.status.operationState?.phase).to.equal("Failed");
      }

      const fixed = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v3") },
        "fix",
      );
      expect(await settled(sim, "podtato", fixed)).to.include({ phase: "Succeeded", health: "Healthy" });
      const recovered = await getApp(sim, "podtato", "?refresh=normal");
      expect(recovered.status.conditions ?? []).to.deep.equal([]);
      expect(recovered.status.sync).to.include({ status: "Synced", revision: fixed });
    });

    it("keeps a hang commit Progressing and never settles it", async () => {
      const remote = await newRemote();
      const sha = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:hang") },
        "hang",
      );
      const sim = await startSim({ apps: [appFor(remote)] });
      const seen: SettledEvent[] = [];
      sim.on("settled", (event) => seen.push(event));
      const app = await waitForApp(
        sim,
        "podtato",
        "the sync to finish",
        (a) => a.status.history?.length === 1,
      );
      expect(app.status.operationState?.phase).to.equal("Succeeded");
      expect(app.status.health.status).to.equal("Progressing");
      // several health evaluations later: still Progressing
      const later = await waitForApp(sim, "podtato", "a later comparison", (a) => {
        return (
          a.status.reconciledAt !== undefined && a.metadata.resourceVersion !== app.metadata.resourceVersion
        );
      });
      expect(later.status.health.status).to.equal("Progressing");
      expect(later.status.sync.revision).to.equal(sha);
      expect(seen).to.deep.equal([]);
    });
  });

  describe("manual sync (POST /api/v1/applications/{name}/sync)", () => {
    it("keeps a non-automated app OutOfSync until POST /sync, then syncs the requested revision", async () => {
      const remote = await newRemote();
      const older = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      const head = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v2") },
        "v2",
      );
      const sim = await startSim({ apps: [appFor(remote, { automated: false })] });

      for (let i = 0; i < 3; i++) {
        const app = await getApp(sim, "podtato", "?refresh=normal");
        expect(app.spec.syncPolicy).to.equal(undefined);
        expect(app.status.sync).to.include({ status: "OutOfSync", revision: head });
        expect(app.status.health.status).to.equal("Missing");
        expect(app.operation).to.equal(undefined);
        expect(app.status.operationState).to.equal(undefined);
      }

      const olderSettled = settled(sim, "podtato", older);
      const answer = await api(sim, "/api/v1/applications/podtato/sync", {
        method: "POST",
        body: { revision: older, prune: true },
      });
      expect(answer.status).to.equal(200);
      expect(answer.body.operation?.sync).to.deep.equal({ revision: older, prune: true });
      expect(answer.body.operation?.initiatedBy).to.deep.equal({ username: "admin" });
      expect(await olderSettled).to.include({ phase: "Succeeded", health: "Healthy" });

      const afterOlder = await getApp(sim, "podtato");
      expect(afterOlder.status.operationState?.syncResult?.revision).to.equal(older);
      expect(afterOlder.status.operationState?.phase).to.equal("Succeeded");
      expect(afterOlder.status.sync, "git head is still ahead").to.include({
        status: "OutOfSync",
        revision: head,
      });

      // a branch name resolves to its head commit
      const headSettled = settled(sim, "podtato", head);
      const byBranch = await api(sim, "/api/v1/applications/podtato/sync", {
        method: "POST",
        body: { revision: "main" },
      });
      expect(byBranch.body.operation?.sync.revision).to.equal(head);
      await headSettled;
      const synced = await waitForApp(
        sim,
        "podtato",
        "Synced at head",
        (view) => view.status.sync.status === "Synced" && view.status.sync.revision === head,
      );
      expect(synced.status.sync).to.include({ status: "Synced", revision: head });
      expect(synced.status.operationState?.syncResult?.revision).to.equal(head);
    });

    it('answers 400 "another operation is already in progress" while an operation runs', async () => {
      const remote = await newRemote();
      await remote.push({ "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") }, "v1");
      const sim = await startSim({ apps: [appFor(remote, { automated: false })], syncDurationMs: 60_000 });

      const first = await api(sim, "/api/v1/applications/podtato/sync", { method: "POST", body: {} });
      expect(first.status).to.equal(200);
      await waitForApp(
        sim,
        "podtato",
        "phase Running",
        (app) => app.status.operationState?.phase === "Running",
      );

      const second = await api(sim, "/api/v1/applications/podtato/sync", { method: "POST", body: {} });
      expect(second.status).to.equal(400);
      expect(second.body).to.deep.equal({
        code: 9,
        error: "another operation is already in progress",
        message: "another operation is already in progress",
      });
    });

    it("rejects an unknown revision, and a pinned revision on an automated app, like argocd-server", async () => {
      const remote = await newRemote();
      const sha = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      const sim = await startSim({
        apps: [appFor(remote, { automated: false }), appFor(remote, { name: "auto", path: "apps/podtato" })],
      });

      const unknown = await api(sim, "/api/v1/applications/podtato/sync", {
        method: "POST",
        body: { revision: "nope" },
      });
      expect(unknown.status).to.equal(400);
      expect(unknown.body).to.deep.include({
        code: 9,
        message:
          "error resolving repo revision: rpc error: code = Unknown desc = Unable to resolve 'nope' to a commit SHA",
      });

      const pinned = await api(sim, "/api/v1/applications/auto/sync", {
        method: "POST",
        body: { revision: sha },
      });
      expect(pinned.status).to.equal(400);
      expect(pinned.body).to.deep.include({
        code: 9,
        message: `Cannot sync to ${sha}: auto-sync currently set to main`,
      });

      const invalid = await api(sim, "/api/v1/applications/podtato/sync", {
        method: "POST",
        body: { prune: "yes" },
      });
      expect(invalid.status).to.equal(400);
      expect(invalid.body).to.deep.include({ code: 3 });

      const short = await api(sim, "/api/v1/applications/podtato/sync", {
        method: "POST",
        body: { revision: sha.slice(0, 10) },
      });
      expect(short.status).to.equal(200);
      expect(short.body.operation?.sync.revision, "an abbreviated SHA resolves to the full one").to.equal(
        sha,
      );
    });
  });

  describe("what the never-fooled traps (test/e2e/never-fooled.ts) need, as the lab showed it", () => {
    it("renders a Helm app with its own value files only: another stage's values change nothing, values.yaml does", async () => {
      const remote = await newRemote();
      const values = (tag: string) => `image:\n  repository: podtato\n  tag: "${tag}"\n`;
      const first = await remote.push(
        {
          "charts/podtato/Chart.yaml": "apiVersion: v2\nname: podtato\nversion: 0.1.0\n",
          "charts/podtato/templates/deployment.yaml": deployment("podtato", "{{ .Values.image.tag }}"),
          "charts/podtato/values.yaml": "replicaCount: 1\n",
          "charts/podtato/values-dev.yaml": values("v1"),
          "charts/podtato/values-production.yaml": values("v1"),
        },
        "chart",
      );
      const app = appFor(remote, { path: "charts/podtato", valueFiles: ["values-production.yaml"] });
      const sim = await startSim({ apps: [app], pollIntervalMs: 60_000 });
      const synced = await waitForApp(
        sim,
        "podtato",
        "Healthy",
        (view) => view.status.health.status === "Healthy",
      );
      expect(synced.spec.source).to.deep.include({ helm: { valueFiles: ["values-production.yaml"] } });

      const dev = await remote.push({ "charts/podtato/values-dev.yaml": values("v2-crashloop") }, "dev");
      const untouched = await getApp(sim, "podtato", "?refresh=normal");
      expect(untouched.status.sync).to.include({ status: "Synced", revision: dev });
      expect(untouched.operation, "nothing to sync").to.equal(undefined);
      expect(untouched.status.operationState?.syncResult?.revision).to.equal(first);

      const shared = await remote.push(
        { "charts/podtato/values.yaml": "replicaCount: 2\n" },
        "shared values",
      );
      const done = settled(sim, "podtato", shared);
      await getApp(sim, "podtato", "?refresh=normal");
      expect(await done, "another stage's crashloop is not rendered").to.include({ health: "Healthy" });
    });

    it("compares without the image when ignoreDifferences names it: Synced at an image-only commit, and a sync still applies it", async () => {
      const remote = await newRemote();
      const first = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      const ignoreDifferences = [
        { group: "apps", kind: "Deployment", jsonPointers: ["/spec/template/spec/containers/0/image"] },
      ];
      const sim = await startSim({ apps: [appFor(remote, { automated: false, ignoreDifferences })] });
      const firstSettled = settled(sim, "podtato", first);
      expect(
        (await api(sim, "/api/v1/applications/podtato/sync", { method: "POST", body: {} })).status,
      ).to.equal(200);
      await firstSettled;

      const refused = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v2-syncfail") },
        "image only",
      );
      const compared = await getApp(sim, "podtato", "?refresh=normal");
      expect(compared.status.sync, "the image is not compared").to.include({
        status: "Synced",
        revision: refused,
      });
      expect(compared.status.health.status).to.equal("Healthy");
      expect(compared.status.operationState?.syncResult?.revision, "no operation at the new commit").to.equal(
        first,
      );
      expect((compared.spec as { ignoreDifferences?: unknown }).ignoreDifferences).to.deep.equal(
        ignoreDifferences,
      );

      // a sync applies the image all the same, and the API server refuses it: Synced with a Failed operation
      const failed = settled(sim, "podtato", refused);
      await api(sim, "/api/v1/applications/podtato/sync", { method: "POST", body: { revision: refused } });
      expect(await failed).to.include({ phase: "Failed" });
      const after = await getApp(sim, "podtato", "?refresh=normal");
      expect(after.status.sync).to.include({ status: "Synced", revision: refused });
      expect(after.status.operationState).to.deep.include({ phase: "Failed" });
      expect(after.status.history?.map((h) => h.revision)).to.deep.equal([first]);

      const other = await remote.push(
        { "apps/podtato/deploy.yaml": `${deployment("podtato", "podtato:v1")}  replicas: 2\n` },
        "not only the image",
      );
      expect((await getApp(sim, "podtato", "?refresh=normal")).status.sync).to.include({
        status: "OutOfSync",
        revision: other,
      });
    });

    it("shows a ?refresh= first as a version with the refresh annotations and the old status, then the automated operation, then the comparison", async () => {
      const remote = await newRemote();
      const first = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      const sim = await startSim({ apps: [appFor(remote)], pollIntervalMs: 60_000 });
      await waitForApp(sim, "podtato", "Synced and Healthy", (app) => app.status.health.status === "Healthy");
      const before = await getApp(sim, "podtato");
      const second = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v2") },
        "v2",
      );
      const stream = await fetch(`${sim.url}/api/v1/stream/applications?name=podtato`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
      let raw = "";
      const refreshed = await getApp(sim, "podtato", "?refresh=normal");
      const versions = () =>
        raw
          .split("\n")
          .filter(Boolean)
          .map((line) => (JSON.parse(line) as WatchMessage).result.application);
      await waitFor("the compared version", async () => {
        raw += (await reader.read()).value ?? "";
        return versions().some((app) => app.status.sync.revision === second) ? true : undefined;
      });
      await reader.cancel();
      const annotations = (app?: AppView) =>
        (app?.metadata as { annotations?: Record<string, string> } | undefined)?.annotations;
      const generation = (app?: AppView) =>
        (app?.metadata as { generation?: number } | undefined)?.generation;
      const [added, annotated, operation, compared] = versions();
      expect(annotations(added)).to.equal(undefined);
      expect(annotations(annotated)).to.deep.equal({
        "argocd.argoproj.io/hydrate": "normal",
        "argocd.argoproj.io/refresh": "normal",
      });
      expect(annotated?.status.sync, "the status is still the old one").to.include({
        status: "Synced",
        revision: first,
      });
      expect(annotated?.status.health.status).to.equal("Healthy");
      expect(generation(annotated), "metadata only: no new generation").to.equal(generation(before));
      expect(annotated?.operation).to.equal(undefined);
      // autoSync writes the operation before the comparison's status
      expect(annotations(operation)).to.deep.equal(annotations(annotated));
      expect(operation?.operation?.sync.revision).to.equal(second);
      expect(operation?.status.sync.revision, "still the old status").to.equal(first);
      expect(annotations(compared)).to.equal(undefined);
      expect(compared?.status.sync).to.include({ status: "OutOfSync", revision: second });
      expect(annotations(refreshed), "the GET answers the compared version").to.equal(undefined);
    });

    it("denySyncs: auto-sync waits and POST /sync answers 403 until the window is lifted and git is compared again", async () => {
      const remote = await newRemote();
      const first = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      const sim = await startSim({ apps: [appFor(remote)], pollIntervalMs: 60_000 });
      await waitForApp(sim, "podtato", "Healthy", (app) => app.status.health.status === "Healthy");
      sim.denySyncs("podtato", true);
      const second = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v2") },
        "v2",
      );
      const blocked = await getApp(sim, "podtato", "?refresh=normal");
      expect(blocked.status.sync).to.include({ status: "OutOfSync", revision: second });
      expect(blocked.operation, "no automated sync").to.equal(undefined);
      expect(blocked.status.operationState?.syncResult?.revision).to.equal(first);
      expect(blocked.status.conditions, "no condition says why").to.equal(undefined);
      const refused = await api(sim, "/api/v1/applications/podtato/sync", { method: "POST", body: {} });
      expect(refused.status).to.equal(403);
      expect(refused.body).to.deep.equal({
        code: 7,
        error: "cannot sync: blocked by sync window",
        message: "cannot sync: blocked by sync window",
      });

      sim.denySyncs("podtato", false);
      const synced = settled(sim, "podtato", second);
      await getApp(sim, "podtato", "?refresh=normal");
      expect(await synced).to.include({ phase: "Succeeded", health: "Healthy" });
    });

    it("setLiveHealth: the live Deployment's health flaps, and the given health outlives a sync until cleared", async () => {
      const remote = await newRemote();
      await remote.push({ "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") }, "v1");
      const sim = await startSim({ apps: [appFor(remote)] });
      await waitForApp(sim, "podtato", "Healthy", (app) => app.status.health.status === "Healthy");

      await sim.setLiveHealth("podtato", "Degraded");
      const degraded = await getApp(sim, "podtato");
      expect(degraded.status.health).to.include({
        status: "Degraded",
        message: "lab: health set by the annotation lab.keptn.sh/health",
      });
      expect(degraded.status.sync.status, "not a difference to git").to.equal("Synced");
      await sim.setLiveHealth("podtato", undefined);
      expect((await getApp(sim, "podtato")).status.health.status).to.equal("Healthy");

      await sim.setLiveHealth("podtato", "Degraded");
      const next = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v2-hang") },
        "v2",
      );
      const rolledOut = await waitForApp(
        sim,
        "podtato",
        "Synced at the next commit",
        (app) => app.status.sync.status === "Synced" && app.status.sync.revision === next,
      );
      expect(rolledOut.status.health.status, "still the given health").to.equal("Degraded");
      await sim.setLiveHealth("podtato", undefined);
      expect((await getApp(sim, "podtato")).status.health.status, "the rollout's own").to.equal(
        "Progressing",
      );
    });

    it("hookfail: the Deployment is applied and the app turns Synced, but the operation fails at the PostSync hook", async () => {
      const remote = await newRemote();
      const first = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      const sim = await startSim({ apps: [appFor(remote, { retry: { limit: 0 } })] });
      await waitForApp(sim, "podtato", "Healthy", (app) => app.status.health.status === "Healthy");
      const sha = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v2-hookfail") },
        "v2",
      );
      const done = settled(sim, "podtato", sha);
      await getApp(sim, "podtato", "?refresh=normal");
      expect(await done).to.include({ phase: "Failed", health: "Healthy" });
      const app = await waitForApp(
        sim,
        "podtato",
        "Synced at the commit",
        (view) => view.status.sync.status === "Synced" && view.status.sync.revision === sha,
      );
      const op = app.status.operationState;
      expect(op?.phase).to.equal("Failed");
      expect(op?.message).to.equal(
        'one or more objects failed to apply, reason: configmaps "podtato-postsync-check" is forbidden: ' +
          'rejected by the simulated API server (a PostSync hook of a manifest that contains "hookfail")',
      );
      expect(op?.syncResult?.revision).to.equal(sha);
      expect(op?.syncResult?.resources?.map((r) => [r.kind, r.status])).to.deep.equal([
        ["Deployment", "Synced"],
        ["ConfigMap", "SyncFailed"],
      ]);
      expect(op?.syncResult?.resources?.[1]).to.include({ hookType: "PostSync", hookPhase: "Failed" });
      expect(app.status.health.status).to.equal("Healthy");
      expect(
        app.status.history?.map((h) => h.revision),
        "no history entry",
      ).to.deep.equal([first]);
    });

    it("gives POST /sync the app's own retry policy when the request has none", async () => {
      const remote = await newRemote();
      await remote.push({ "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") }, "v1");
      const retry = { limit: 1, backoff: { duration: "1s", factor: 1, maxDuration: "1s" } };
      const sim = await startSim({ apps: [appFor(remote, { automated: false, retry })] });
      const answer = await api(sim, "/api/v1/applications/podtato/sync", { method: "POST", body: {} });
      expect((answer.body.operation as { retry?: unknown } | undefined)?.retry).to.deep.equal(retry);
    });
  });

  describe("auth and lookup", () => {
    it("answers 401 without or with a wrong token, 403 for an unknown app, 404 when a project is named", async () => {
      const remote = await newRemote();
      await remote.push({ "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") }, "v1");
      const sim = await startSim({ apps: [appFor(remote)] });

      const missing = await api(sim, "/api/v1/applications/podtato", { token: null });
      expect(missing.status).to.equal(401);
      expect(missing.body).to.deep.include({ code: 16, message: "no session information" });

      const notJwt = await api(sim, "/api/v1/applications/podtato", { token: "forged" });
      expect(notJwt.status).to.equal(401);
      expect(notJwt.body).to.deep.include({ code: 16, message: "no session information" });

      const wrong = await api(sim, "/api/v1/applications/podtato", {
        token: "eyJhbGciOiJIUzI1NiJ9.e30.Zm9yZ2Vk",
      });
      expect(wrong.status).to.equal(401);
      expect(wrong.body).to.deep.equal({
        code: 16,
        error: "invalid session: token signature is invalid",
        message: "invalid session: token signature is invalid",
      });

      const cookie = await api(sim, "/api/v1/applications/podtato", {
        token: null,
        headers: { cookie: `argocd.token=${TOKEN}` },
      });
      expect(cookie.status).to.equal(200);

      const unknown = await api(sim, "/api/v1/applications/nope");
      expect(unknown.status).to.equal(403);
      expect(unknown.body).to.deep.equal({
        code: 7,
        error: "permission denied",
        message: "permission denied",
      });

      const withProject = await api(sim, "/api/v1/applications/nope?project=default");
      expect(withProject.status).to.equal(404);
      expect(withProject.body).to.deep.include({ code: 5 });

      const stream = await api(sim, "/api/v1/stream/applications", { token: null });
      expect(stream.status).to.equal(401);
    });

    it("answers injected failures with the given status and an Argo-style body, then recovers", async () => {
      const remote = await newRemote();
      await remote.push({ "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") }, "v1");
      const sim = await startSim({ apps: [appFor(remote)] });
      const before = sim.requests.length;

      sim.injectFailures(2);
      sim.injectFailures(1, 500);
      const answers = [];
      for (let i = 0; i < 4; i++)
        answers.push(await api<{ code?: number }>(sim, "/api/v1/applications/podtato"));
      expect(answers.map((a) => a.status)).to.deep.equal([503, 503, 500, 200]);
      expect(answers[0]?.body.code).to.equal(14);
      expect(answers[2]?.body.code).to.equal(2);
      expect(sim.requests.slice(before).map((r) => `${r.method} ${r.path}`)).to.deep.equal(
        Array(4).fill("GET /api/v1/applications/podtato"),
      );
    });

    it("records every request with its query and body", async () => {
      const remote = await newRemote();
      await remote.push({ "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") }, "v1");
      const sim = await startSim({ apps: [appFor(remote, { automated: false })] });
      await api(sim, "/api/v1/applications/podtato?refresh=hard");
      await api(sim, "/api/v1/applications/podtato/sync", { method: "POST", body: { revision: "main" } });
      expect(sim.requests).to.deep.equal([
        { method: "GET", path: "/api/v1/applications/podtato", query: { refresh: "hard" } },
        { method: "POST", path: "/api/v1/applications/podtato/sync", query: {}, body: { revision: "main" } },
      ]);
    });
  });

  describe("refresh", () => {
    it("returns the new head at once with ?refresh=normal even with a long poll interval", async () => {
      const remote = await newRemote();
      const first = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      const sim = await startSim({ apps: [appFor(remote, { automated: false })], pollIntervalMs: 60_000 });
      expect((await getApp(sim, "podtato")).status.sync.revision).to.equal(first);

      const second = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v2") },
        "v2",
      );
      expect(
        (await getApp(sim, "podtato")).status.sync.revision,
        "no refresh: the cached comparison",
      ).to.equal(first);
      const refreshed = await getApp(sim, "podtato", "?refresh=normal");
      expect(refreshed.status.sync).to.include({ revision: second, status: "OutOfSync" });
      expect(refreshed.status.reconciledAt).to.match(RFC3339_SECONDS);
    });

    it("reports Unknown with a ComparisonError while the branch is missing, and recovers once it is pushed", async () => {
      const remote = await newRemote();
      const sim = await startSim({
        apps: [
          appFor(remote),
          appFor(remote, { name: "no-repo", gitDir: join(remote.root, "does-not-exist.git") }),
        ],
      });

      const app = await getApp(sim, "podtato", "?refresh=normal");
      expect(app.status.sync.status).to.equal("Unknown");
      expect(app.status.sync.revision).to.equal(undefined);
      expect(app.status.conditions?.[0]).to.include({ type: "ComparisonError" });
      expect(app.status.conditions?.[0]?.message).to.contain("Unable to resolve 'main' to a commit SHA");
      const noRepo = await getApp(sim, "no-repo", "?refresh=normal");
      expect(noRepo.status.sync.status).to.equal("Unknown");
      expect(noRepo.status.conditions?.[0]?.type).to.equal("ComparisonError");

      const sha = await remote.push({ "apps/other/x.yaml": "kind: ConfigMap\n" }, "wrong path");
      const noPath = await getApp(sim, "podtato", "?refresh=normal");
      expect(noPath.status.sync).to.include({ status: "Unknown", revision: sha });
      expect(noPath.status.conditions?.[0]?.message).to.contain("apps/podtato: app path does not exist");

      const good = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      await settled(sim, "podtato", good);
      const recovered = await waitForApp(
        sim,
        "podtato",
        "Synced at the good commit",
        (view) => view.status.sync.status === "Synced" && view.status.sync.revision === good,
      );
      expect(recovered.status.sync).to.include({ status: "Synced", revision: good });
      expect(recovered.status.conditions).to.equal(undefined);
    });
  });

  describe("watch (GET /api/v1/stream/applications)", () => {
    it("streams ADDED then MODIFIED frames in the real SSE framing, with keepalives, and ends on stop()", async () => {
      const remote = await newRemote();
      const first = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") },
        "v1",
      );
      const sim = new ArgoCdSimulator({
        token: TOKEN,
        ...FAST,
        keepaliveIntervalMs: 25,
        apps: [appFor(remote), appFor(remote, { name: "other" })],
      });
      sims.push(sim);
      const firstSettled = settled(sim, "podtato", first);
      await sim.start();
      await firstSettled;

      const response = await fetch(`${sim.url}/api/v1/stream/applications?name=podtato`, {
        headers: { authorization: `Bearer ${TOKEN}`, accept: "text/event-stream" },
      });
      expect(response.status).to.equal(200);
      expect(response.headers.get("content-type")).to.match(/^text\/event-stream/);
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let raw = "";
      const readUntil = (what: string, done: (text: string) => boolean) =>
        waitFor(what, async () => {
          const chunk = await reader.read();
          if (chunk.done) throw new Error(`stream ended while waiting for ${what}`);
          raw += chunk.value;
          return done(raw) ? raw : undefined;
        });

      await readUntil("the ADDED frame", (text) => text.includes(" \n\n\n"));
      expect(
        raw.startsWith('data: {"result":{"type":"ADDED","application":{"metadata":{"name":"podtato"'),
      ).to.equal(true);

      const second = await remote.push(
        { "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v2") },
        "v2",
      );
      await readUntil("a MODIFIED frame with the synced SHA and a keepalive", (text) => {
        const frames = parseSse(text).frames;
        const last = frames.at(-1)?.result.application;
        return text.includes(":\n") && last?.status.operationState?.syncResult?.revision === second;
      });

      const { frames, keepalives } = parseSse(raw);
      expect(keepalives).to.be.greaterThan(0);
      expect(frames[0]?.result.type).to.equal("ADDED");
      expect(frames.slice(1).map((f) => f.result.type)).to.satisfy((types: string[]) =>
        types.every((t) => t === "MODIFIED"),
      );
      expect(frames.length).to.be.greaterThan(1);
      expect(
        frames.every((f) => f.result.application.metadata.name === "podtato"),
        "name filter",
      ).to.equal(true);
      const versions = frames.map((f) => Number(f.result.application.metadata.resourceVersion));
      expect(versions, "resourceVersion only grows").to.deep.equal([...versions].sort((a, b) => a - b));
      const bodies = frames.map((f) => JSON.stringify(f));
      bodies
        .slice(1)
        .forEach((body, i) =>
          expect(body, "identical consecutive frames are dropped").to.not.equal(bodies[i]),
        );

      await sim.stop();
      const rest = await waitFor("the stream to end", async () => {
        const chunk = await reader.read();
        return chunk.done ? true : undefined;
      });
      expect(rest).to.equal(true);
    });

    it("streams newline-delimited JSON without the SSE Accept header", async () => {
      const remote = await newRemote();
      await remote.push({ "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") }, "v1");
      const sim = await startSim({ apps: [appFor(remote), appFor(remote, { name: "other" })] });
      const controller = new AbortController();
      const response = await fetch(`${sim.url}/api/v1/stream/applications`, {
        headers: { authorization: `Bearer ${TOKEN}` },
        signal: controller.signal,
      });
      expect(response.headers.get("content-type")).to.match(/^application\/json/);
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let raw = "";
      await waitFor("two ADDED lines", async () => {
        const chunk = await reader.read();
        raw += chunk.value ?? "";
        return raw.split("\n").length > 2 ? true : undefined;
      });
      const lines = raw.split("\n").slice(0, 2);
      const events = lines.map((line) => JSON.parse(line) as WatchMessage);
      expect(events.map((e) => [e.result.type, e.result.application.metadata.name])).to.have.deep.members([
        ["ADDED", "podtato"],
        ["ADDED", "other"],
      ]);
      controller.abort();
    });
  });

  it("leaves no timers behind after stop()", async () => {
    // no fetch in this test: undici keeps timers of its own. Mocha arms its test timer once this function
    // has returned its promise, so take the baseline after one tick.
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;
    await new Promise((resolve) => setImmediate(resolve));
    const before = timers();
    const remote = await newRemote();
    const sha = await remote.push({ "apps/podtato/deploy.yaml": deployment("podtato", "podtato:v1") }, "v1");
    const sim = new ArgoCdSimulator({ token: TOKEN, ...FAST, apps: [appFor(remote)] });
    const done = settled(sim, "podtato", sha);
    await sim.start();
    await done;
    // No "more timers while running" check: between two polls the simulator may be waiting on a git process
    // with no timer armed, so such a check fails now and then (it did in CI).
    await sim.stop();
    expect(timers()).to.be.at.most(before);
    expect(sim.errors).to.deep.equal([]);
  });
});

interface WatchMessage {
  result: { type: string; application: AppView };
}

/** Splits the byte stream exactly: keepalive ':\n', or 'data: <json> \n\n' + '\n'. Anything else fails. */
function parseSse(text: string): { frames: WatchMessage[]; keepalives: number } {
  const frames: WatchMessage[] = [];
  let keepalives = 0;
  let rest = text;
  while (rest.length > 0) {
    if (rest.startsWith(":\n")) {
      keepalives++;
      rest = rest.slice(2);
      continue;
    }
    expect(rest.startsWith("data: "), `unexpected bytes: ${JSON.stringify(rest.slice(0, 40))}`).to.equal(
      true,
    );
    const end = rest.indexOf(" \n\n\n");
    if (end < 0) break; // a frame still arriving
    frames.push(JSON.parse(rest.slice("data: ".length, end)) as WatchMessage);
    rest = rest.slice(end + " \n\n\n".length);
  }
  return { frames, keepalives };
}
