import { expect } from "chai";
import { commitToBare, createGitopsFixture, git, gitLog, readFileAt } from "../../support/gitops-fixture.js";
import type { GitopsFixture } from "../../support/gitops-fixture.js";
import { GitLabSimulator } from "./gitlab-simulator.js";
import type { SimulatedProject } from "./gitlab-simulator.js";

const TOKEN = "glpat-simulatorTestToken01";
const PROJECT_ID = 42;
const PROJECT_PATH = "sockshop/gitops";
const ENCODED = encodeURIComponent(PROJECT_PATH); // sockshop%2Fgitops
const BRANCH = "keptn/sockshop/dev/carts";
const VALUES = "charts/carts/values-dev.yaml";

/** The parts of a merge request these tests read. */
interface MergeRequestView {
  id: number;
  iid: number;
  project_id: number;
  title: string;
  description: string | null;
  state: "opened" | "closed" | "merged" | "locked";
  source_branch: string;
  target_branch: string;
  sha: string;
  merge_commit_sha: string | null;
  squash_commit_sha: string | null;
  merge_when_pipeline_succeeds: boolean;
  merge_status: string;
  detailed_merge_status: string;
  has_conflicts: boolean;
  web_url: string;
  references: { full: string };
  merge_user: { username: string } | null;
  merged_at: string | null;
  closed_by: { username: string } | null;
  diff_refs: { base_sha: string; head_sha: string };
}

interface Answer<T> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

async function parentsOf(bareDir: string, sha: string): Promise<string[]> {
  const out = await git(["--git-dir", bareDir, "rev-list", "--parents", "-n", "1", sha]);
  return out.trim().split(" ").slice(1);
}

describe("GitLabSimulator", function () {
  this.timeout(15000);

  let fixture: GitopsFixture;
  let sim: GitLabSimulator;

  async function start(overrides: Partial<SimulatedProject> = {}) {
    sim = new GitLabSimulator({
      token: TOKEN,
      projects: [{ id: PROJECT_ID, path: PROJECT_PATH, gitDir: fixture.bareDir, ...overrides }],
    });
    await sim.start();
  }

  async function api<T = MergeRequestView>(
    method: string,
    path: string,
    body?: Record<string, unknown>,
    headers: Record<string, string> = { "PRIVATE-TOKEN": TOKEN },
  ): Promise<Answer<T>> {
    const response = await fetch(`${sim.url}/api/v4${path}`, {
      method,
      headers: { ...headers, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    const json = (response.headers.get("content-type") ?? "").includes("json")
      ? (JSON.parse(text) as T)
      : (text as T);
    return { status: response.status, headers: response.headers, body: json, text };
  }

  /** Pushes an image bump to the source branch and opens the merge request. */
  async function openMergeRequest(tag = "0.14.0", extra: Record<string, unknown> = {}) {
    const head = await commitToBare(
      fixture.bareDir,
      { [VALUES]: `image:\n  tag: "${tag}"\n` },
      `carts ${tag}`,
      {
        branch: BRANCH,
      },
    );
    const created = await api("POST", `/projects/${ENCODED}/merge_requests`, {
      source_branch: BRANCH,
      target_branch: "main",
      title: `Deploy carts ${tag} to dev`,
      description: "Keptn context: 0a1b2c",
      ...extra,
    });
    expect(created.status, created.text).to.equal(201);
    return { mr: created.body, head };
  }

  beforeEach(async () => {
    fixture = await createGitopsFixture();
  });

  afterEach(async () => {
    await sim.stop();
    expect(sim.errors, "internal simulator errors").to.deep.equal([]);
    await fixture.remove();
  });

  it("opens, finds by source branch, reads and updates a merge request, by numeric id or encoded path", async () => {
    await start();
    const { mr, head } = await openMergeRequest();
    expect(mr).to.include({
      iid: 1,
      project_id: PROJECT_ID,
      state: "opened",
      sha: head,
      source_branch: BRANCH,
    });
    expect(mr).to.include({
      merge_commit_sha: null,
      merge_when_pipeline_succeeds: false,
      detailed_merge_status: "checking",
    });
    expect(mr.web_url).to.equal(`${sim.url}/${PROJECT_PATH}/-/merge_requests/1`);
    expect(mr.references.full).to.equal(`${PROJECT_PATH}!1`);

    const found = await api<MergeRequestView[]>(
      "GET",
      `/projects/${PROJECT_ID}/merge_requests?source_branch=${encodeURIComponent(BRANCH)}&state=opened`,
    );
    expect(found.body.map((m) => m.iid)).to.deep.equal([1]);
    expect(found.headers.get("x-total")).to.equal("1");
    const none = await api<MergeRequestView[]>(
      "GET",
      `/projects/${ENCODED}/merge_requests?source_branch=other&state=opened`,
    );
    expect(none.body).to.deep.equal([]);

    // mergeability is checked asynchronously: "checking" first, then the result
    expect((await api("GET", `/projects/${ENCODED}/merge_requests/1`)).body.detailed_merge_status).to.equal(
      "checking",
    );
    const checked = (await api("GET", `/projects/${ENCODED}/merge_requests/1`)).body;
    expect(checked).to.include({
      merge_status: "can_be_merged",
      detailed_merge_status: "mergeable",
      has_conflicts: false,
    });

    const updated = await api("PUT", `/projects/${ENCODED}/merge_requests/1`, {
      title: "Deploy carts 0.14.0",
      description: "new",
    });
    expect(updated.body).to.include({ title: "Deploy carts 0.14.0", description: "new", state: "opened" });
    const nothing = await api<{ error: string }>("PUT", `/projects/${ENCODED}/merge_requests/1`, {});
    expect(nothing.status).to.equal(400);
    expect(nothing.body.error).to.match(/at least one parameter must be provided$/);

    const project = await api<{ default_branch: string; path_with_namespace: string }>(
      "GET",
      `/projects/${ENCODED}`,
    );
    expect(project.body).to.include({ default_branch: "main", path_with_namespace: PROJECT_PATH });
  });

  it("merges with a real merge commit on main (PUT .../merge), and answers 405 afterwards", async () => {
    await start();
    const { head } = await openMergeRequest();
    const before = (await gitLog(fixture.bareDir))[0]?.sha ?? "";
    const merged = await api("PUT", `/projects/${ENCODED}/merge_requests/1/merge`, {
      sha: head,
      should_remove_source_branch: true,
    });
    expect(merged.status, merged.text).to.equal(200);
    expect(merged.body).to.include({ state: "merged", detailed_merge_status: "not_open", sha: head });
    expect(merged.body.merge_user?.username).to.equal("keptn-bot");
    const sha = merged.body.merge_commit_sha ?? "";

    const log = await gitLog(fixture.bareDir);
    expect(log[0]).to.include({ sha, subject: `Merge branch '${BRANCH}' into 'main'` });
    expect(log[0]?.body).to.equal(`Deploy carts 0.14.0 to dev\n\nSee merge request ${PROJECT_PATH}!1`);
    expect(await parentsOf(fixture.bareDir, sha)).to.deep.equal([before, head]);
    expect(await readFileAt(fixture.bareDir, "main", VALUES)).to.equal('image:\n  tag: "0.14.0"\n');
    const branches = await git(["--git-dir", fixture.bareDir, "branch", "--list"]);
    expect(branches, "source branch removed").to.not.include(BRANCH);

    const again = await api<{ message: string }>("PUT", `/projects/${PROJECT_ID}/merge_requests/1/merge`);
    expect(again.status).to.equal(405);
    expect(again.body).to.deep.equal({ message: "405 Method Not Allowed" });
    const merges = await api<MergeRequestView[]>("GET", `/projects/${ENCODED}/merge_requests?state=merged`);
    expect(merges.body.map((m) => m.merge_commit_sha)).to.deep.equal([sha]);
  });

  it("squashes into one commit on the merge base, then merges it, as GitLab does", async () => {
    await start();
    await commitToBare(fixture.bareDir, { "notes.txt": "first\n" }, "first change", { branch: BRANCH });
    const { head } = await openMergeRequest();
    const before = (await gitLog(fixture.bareDir))[0]?.sha ?? "";
    const merged = await api("PUT", `/projects/${ENCODED}/merge_requests/1/merge`, { squash: true });
    const squash = merged.body.squash_commit_sha ?? "";
    const merge = merged.body.merge_commit_sha ?? "";
    expect(await parentsOf(fixture.bareDir, squash)).to.deep.equal([before]);
    expect(await parentsOf(fixture.bareDir, merge)).to.deep.equal([before, squash]);
    expect((await gitLog(fixture.bareDir, squash))[0]?.subject).to.equal("Deploy carts 0.14.0 to dev");
    const tree = (ref: string) => git(["--git-dir", fixture.bareDir, "rev-parse", `${ref}^{tree}`]);
    expect(await tree(merge)).to.equal(await tree(head));
  });

  it("answers 409 when the source moved since `sha`, 405 on a conflict (406 on older GitLab) or a closed MR", async () => {
    await start();
    const { head } = await openMergeRequest();
    await commitToBare(fixture.bareDir, { "extra.txt": "x\n" }, "another push", { branch: BRANCH });
    const stale = await api<{ message: string }>("PUT", `/projects/${ENCODED}/merge_requests/1/merge`, {
      sha: head,
    });
    expect(stale.status).to.equal(409);
    expect(stale.body).to.deep.equal({ message: "SHA does not match HEAD of source branch" });

    await commitToBare(fixture.bareDir, { [VALUES]: 'image:\n  tag: "9.9.9"\n' }, "hotfix on main");
    const conflict = await api<{ message: string }>("PUT", `/projects/${ENCODED}/merge_requests/1/merge`);
    expect(conflict.status).to.equal(405);
    const view = (await api("GET", `/projects/${ENCODED}/merge_requests/1`)).body;
    expect(view).to.include({
      detailed_merge_status: "conflict",
      merge_status: "cannot_be_merged",
      has_conflicts: true,
    });

    const closed = await api("PUT", `/projects/${ENCODED}/merge_requests/1`, { state_event: "close" });
    expect(closed.body).to.include({ state: "closed" });
    expect(closed.body.closed_by?.username).to.equal("keptn-bot");
    expect((await api("PUT", `/projects/${ENCODED}/merge_requests/1/merge`)).status).to.equal(405);
    expect((await gitLog(fixture.bareDir))[0]?.subject).to.equal("hotfix on main");

    await sim.stop();
    sim = new GitLabSimulator({
      token: TOKEN,
      conflictStatus: 406,
      projects: [{ id: PROJECT_ID, path: PROJECT_PATH, gitDir: fixture.bareDir }],
    });
    await sim.start();
    await api("POST", `/projects/${ENCODED}/merge_requests`, {
      source_branch: BRANCH,
      target_branch: "main",
      title: "t",
    });
    const old = await api<{ message: string }>("PUT", `/projects/${ENCODED}/merge_requests/1/merge`);
    expect(old.status).to.equal(406);
    expect(old.body).to.deep.equal({ message: "Branch cannot be merged" });
  });

  it("refuses a second open MR for the same source branch with 409, and missing fields with 400", async () => {
    await start();
    await openMergeRequest();
    const duplicate = await api<{ message: string[] }>("POST", `/projects/${ENCODED}/merge_requests`, {
      source_branch: BRANCH,
      target_branch: "main",
      title: "again",
    });
    expect(duplicate.status).to.equal(409);
    expect(duplicate.body).to.deep.equal({
      message: ["Another open merge request already exists for this source branch: !1"],
    });
    const missing = await api<{ error: string }>("POST", `/projects/${ENCODED}/merge_requests`, {
      source_branch: BRANCH,
    });
    expect(missing.status).to.equal(400);
    expect(missing.body.error).to.equal("target_branch is missing, title is missing");
    const unknownProject = await api<{ message: string }>("GET", `/projects/other%2Fproject/merge_requests`);
    expect(unknownProject.status).to.equal(404);
    expect(unknownProject.body).to.deep.equal({ message: "404 Project Not Found" });
    const unencoded = await api<{ error: string }>("GET", `/projects/${PROJECT_PATH}/merge_requests`);
    expect(unencoded.status, "a path must be URL-encoded").to.equal(404);
  });

  it("merges when the pipeline succeeds (merge_when_pipeline_succeeds), and cancels on a failed pipeline", async () => {
    await start({ onlyAllowMergeIfPipelineSucceeds: true });
    const { head } = await openMergeRequest();
    await sim.setPipeline(PROJECT_ID, 1, "running");
    const direct = await api("PUT", `/projects/${ENCODED}/merge_requests/1/merge`);
    expect(direct.status, "pipelines must succeed").to.equal(405);

    const queued = await api("PUT", `/projects/${ENCODED}/merge_requests/1/merge`, {
      merge_when_pipeline_succeeds: true,
      sha: head,
    });
    expect(queued.status).to.equal(200);
    expect(queued.body).to.include({
      state: "opened",
      merge_when_pipeline_succeeds: true,
      merge_commit_sha: null,
    });
    expect((await gitLog(fixture.bareDir))[0]?.subject).to.equal("Initial GitOps layout for sockshop");

    await sim.setPipeline(PROJECT_ID, 1, "success");
    const merged = (await api("GET", `/projects/${ENCODED}/merge_requests/1`)).body;
    expect(merged).to.include({ state: "merged", merge_when_pipeline_succeeds: false });
    expect((await gitLog(fixture.bareDir))[0]?.sha).to.equal(merged.merge_commit_sha);

    await commitToBare(fixture.bareDir, { [VALUES]: 'image:\n  tag: "0.15.0"\n' }, "carts 0.15.0", {
      branch: "keptn/next",
    });
    await api("POST", `/projects/${ENCODED}/merge_requests`, {
      source_branch: "keptn/next",
      target_branch: "main",
      title: "next",
    });
    await sim.setPipeline(PROJECT_PATH, 2, "running");
    await api("PUT", `/projects/${ENCODED}/merge_requests/2/merge`, { merge_when_pipeline_succeeds: "true" });
    await sim.setPipeline(PROJECT_ID, 2, "failed");
    const cancelled = (await api("GET", `/projects/${ENCODED}/merge_requests/2`)).body;
    expect(cancelled).to.include({
      state: "opened",
      merge_when_pipeline_succeeds: false,
      detailed_merge_status: "ci_must_pass",
    });
  });

  it("lets a reviewer merge or close, so that waiting for the merge can be tested", async () => {
    await start();
    const { head } = await openMergeRequest();
    const sha = await sim.mergeAsReviewer(PROJECT_PATH, 1);
    const view = (await api("GET", `/projects/${ENCODED}/merge_requests/1`)).body;
    expect(view).to.include({ state: "merged", merge_commit_sha: sha });
    expect(view.merge_user?.username).to.equal("reviewer");
    expect((await parentsOf(fixture.bareDir, sha))[1]).to.equal(head);

    await commitToBare(fixture.bareDir, { [VALUES]: 'image:\n  tag: "0.15.0"\n' }, "carts 0.15.0", {
      branch: "keptn/next",
    });
    await api("POST", `/projects/${ENCODED}/merge_requests`, {
      source_branch: "keptn/next",
      target_branch: "main",
      title: "next",
    });
    await sim.closeAsReviewer(PROJECT_ID, 2);
    const closed = (await api("GET", `/projects/${ENCODED}/merge_requests/2`)).body;
    expect(closed).to.include({ state: "closed", merge_commit_sha: null, merged_at: null });
    expect(closed.closed_by?.username).to.equal("reviewer");
  });

  it("takes PRIVATE-TOKEN or Bearer, answers 401 otherwise, and 429 with Retry-After when rate limited", async () => {
    await start();
    const bearer = await api("GET", `/projects/${ENCODED}/merge_requests`, undefined, {
      authorization: `Bearer ${TOKEN}`,
    });
    expect(bearer.status).to.equal(200);
    const none = await api<{ message: string }>("GET", `/projects/${ENCODED}/merge_requests`, undefined, {});
    expect(none.status).to.equal(401);
    expect(none.body).to.deep.equal({ message: "401 Unauthorized" });
    const wrong = await api("GET", `/projects/${ENCODED}/merge_requests`, undefined, {
      "PRIVATE-TOKEN": "nope",
    });
    expect(wrong.status).to.equal(401);

    sim.rateLimitNext({ retryAfterSeconds: 3 });
    const limited = await api<string>("GET", `/projects/${ENCODED}/merge_requests`);
    expect(limited.status).to.equal(429);
    expect(limited.headers.get("retry-after")).to.equal("3");
    expect(limited.headers.get("ratelimit-remaining")).to.equal("0");
    expect(limited.text).to.equal("Retry later\n");

    sim.rateLimitNext({ kind: "endpoint", retryAfterSeconds: 1 });
    const endpoint = await api<{ message: string }>("GET", `/projects/${ENCODED}/merge_requests`);
    expect(endpoint.status).to.equal(429);
    expect(endpoint.body.message).to.match(/requested too many times/);

    await commitToBare(fixture.bareDir, { [VALUES]: "x: 1\n" }, "bump", { branch: BRANCH });
    sim.injectFailures(1, 503);
    const body = { source_branch: BRANCH, target_branch: "main", title: "t" };
    expect((await api("POST", `/projects/${ENCODED}/merge_requests`, body)).status).to.equal(503);
    const created = await api("POST", `/projects/${ENCODED}/merge_requests`, body);
    expect(created.body.iid, "the failed call was not processed").to.equal(1);
    expect(sim.requests.filter((r) => r.method === "POST").map((r) => r.path)).to.deep.equal(
      Array(2).fill(`/api/v4/projects/${ENCODED}/merge_requests`),
    );
  });
});
