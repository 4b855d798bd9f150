import { generateKeyPairSync, sign } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { Octokit } from "@octokit/rest";
import { expect } from "chai";
import { commitToBare, createGitopsFixture, git, gitLog, readFileAt } from "../../support/gitops-fixture.js";
import type { GitopsFixture } from "../../support/gitops-fixture.js";
import { GitHubSimulator } from "./github-simulator.js";

const TOKEN = "ghp_simulatorTestToken0123456789abcdef";
const OWNER = "sockshop";
const REPO = "gitops";
const BRANCH = "keptn/sockshop/dev/carts";
const VALUES = "charts/carts/values-dev.yaml";
const silent = { debug() {}, info() {}, warn() {}, error() {} };

interface Rejection {
  status: number;
  data: { message?: string; documentation_url?: string; status?: string; errors?: unknown[] };
  headers: Record<string, string | undefined>;
}

/** The RequestError octokit throws, reduced to what GitHub sent. */
async function rejection(promise: Promise<unknown>): Promise<Rejection> {
  try {
    await promise;
  } catch (error) {
    const { status, response } = error as {
      status: number;
      response?: { data: Rejection["data"]; headers: Rejection["headers"] };
    };
    return { status, data: response?.data ?? {}, headers: response?.headers ?? {} };
  }
  throw new Error("expected the call to fail");
}

async function parentsOf(bareDir: string, sha: string): Promise<string[]> {
  const out = await git(["--git-dir", bareDir, "rev-list", "--parents", "-n", "1", sha]);
  return out.trim().split(" ").slice(1);
}

describe("GitHubSimulator", function () {
  this.timeout(15000);

  let fixture: GitopsFixture;
  let sim: GitHubSimulator;
  let octokit: Octokit;

  beforeEach(async () => {
    fixture = await createGitopsFixture();
    sim = new GitHubSimulator({
      token: TOKEN,
      repositories: [
        { owner: OWNER, repo: REPO, gitDir: fixture.bareDir, cloneUrl: "http://git.test/gitops.git" },
      ],
    });
    await sim.start();
    octokit = new Octokit({ auth: TOKEN, baseUrl: sim.url, log: silent });
  });

  afterEach(async () => {
    await sim.stop();
    expect(sim.errors, "internal simulator errors").to.deep.equal([]);
    await fixture.remove();
  });

  /** Pushes an image bump to the PR branch and opens the pull request. */
  async function openPull(tag = "0.14.0") {
    const head = await commitToBare(
      fixture.bareDir,
      { [VALUES]: `image:\n  tag: "${tag}"\n` },
      `carts ${tag}`,
      {
        branch: BRANCH,
      },
    );
    const { data, status, headers } = await octokit.rest.pulls.create({
      owner: OWNER,
      repo: REPO,
      head: BRANCH,
      base: "main",
      title: `Deploy carts ${tag} to dev`,
      body: "Keptn context: 0a1b2c",
    });
    expect(status).to.equal(201);
    expect(headers.location).to.equal(`${sim.url}/repos/${OWNER}/${REPO}/pulls/${data.number}`);
    return { pull: data, head };
  }

  it("opens, finds, reads and updates a pull request with the real client", async () => {
    const repo = await octokit.rest.repos.get({ owner: OWNER, repo: REPO });
    expect(repo.data).to.include({ full_name: `${OWNER}/${REPO}`, default_branch: "main" });
    expect(repo.data.clone_url).to.equal("http://git.test/gitops.git");

    const { pull, head } = await openPull();
    expect(pull).to.include({ number: 1, state: "open", merged: false, mergeable: null, draft: false });
    expect(pull.html_url).to.equal(`${sim.url}/${OWNER}/${REPO}/pull/1`);
    expect(pull.head).to.include({ ref: BRANCH, sha: head, label: `${OWNER}:${BRANCH}` });
    expect(pull.base.ref).to.equal("main");
    expect(pull.user.login).to.equal("keptn-bot");

    const found = await octokit.rest.pulls.list({
      owner: OWNER,
      repo: REPO,
      head: `${OWNER}:${BRANCH}`,
      state: "open",
    });
    expect(found.data.map((p) => p.number)).to.deep.equal([1]);
    expect(found.data[0]).to.not.have.property("mergeable"); // pull-request-simple
    const other = await octokit.rest.pulls.list({
      owner: OWNER,
      repo: REPO,
      head: `${OWNER}:keptn/other`,
      state: "open",
    });
    expect(other.data).to.deep.equal([]);

    // mergeability is computed in the background: null on the first read, then the answer
    const first = await octokit.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 });
    expect(first.data).to.include({ mergeable: null, mergeable_state: "unknown" });
    const second = await octokit.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 });
    expect(second.data).to.include({
      mergeable: true,
      mergeable_state: "clean",
      commits: 1,
      changed_files: 1,
    });
    expect(second.data.merge_commit_sha, "the test merge commit").to.match(/^[0-9a-f]{40}$/);
    expect((await gitLog(fixture.bareDir))[0]?.subject, "main has not moved").to.equal(
      "Initial GitOps layout for sockshop",
    );

    const updated = await octokit.rest.pulls.update({
      owner: OWNER,
      repo: REPO,
      pull_number: 1,
      title: "Deploy carts 0.14.0 to dev (updated)",
      body: "new body",
    });
    expect(updated.data).to.include({
      title: "Deploy carts 0.14.0 to dev (updated)",
      body: "new body",
      state: "open",
    });
  });

  it("merges with a real merge commit on main, and answers like GitHub afterwards", async () => {
    const { head } = await openPull();
    const before = (await gitLog(fixture.bareDir))[0]?.sha ?? "";
    const merge = await octokit.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 1, sha: head });
    expect(merge.data).to.include({ merged: true, message: "Pull Request successfully merged" });

    const log = await gitLog(fixture.bareDir);
    expect(log[0]).to.include({
      sha: merge.data.sha,
      subject: `Merge pull request #1 from ${OWNER}/${BRANCH}`,
    });
    expect(log[0]?.body).to.equal("Deploy carts 0.14.0 to dev");
    expect(log[0]?.author).to.equal("keptn-bot <100000+keptn-bot@users.noreply.github.com>");
    expect(await parentsOf(fixture.bareDir, merge.data.sha)).to.deep.equal([before, head]);
    expect(await readFileAt(fixture.bareDir, "main", VALUES)).to.equal('image:\n  tag: "0.14.0"\n');

    const pull = await octokit.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 });
    expect(pull.data).to.include({ state: "closed", merged: true, merge_commit_sha: merge.data.sha });
    expect(pull.data.merged_by?.login).to.equal("keptn-bot");
    expect(pull.data.merged_at).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const again = await rejection(octokit.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 1 }));
    expect(again.status).to.equal(405);
    expect(again.data).to.include({ message: "Pull Request is not mergeable", status: "405" });
    expect(again.data.documentation_url).to.equal(
      "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request",
    );
    const open = await octokit.rest.pulls.list({
      owner: OWNER,
      repo: REPO,
      head: `${OWNER}:${BRANCH}`,
      state: "open",
    });
    expect(open.data).to.deep.equal([]);
  });

  it("squashes when asked: one parent, the head's changes, GitHub's default title", async () => {
    await commitToBare(fixture.bareDir, { "notes.txt": "first\n" }, "first change", { branch: BRANCH });
    const { head } = await openPull();
    const before = (await gitLog(fixture.bareDir))[0]?.sha ?? "";
    const merge = await octokit.rest.pulls.merge({
      owner: OWNER,
      repo: REPO,
      pull_number: 1,
      merge_method: "squash",
    });
    const log = await gitLog(fixture.bareDir);
    expect(log[0]).to.include({ sha: merge.data.sha, subject: "Deploy carts 0.14.0 to dev (#1)" });
    expect(log[0]?.body).to.equal("* first change\n\n* carts 0.14.0");
    expect(await parentsOf(fixture.bareDir, merge.data.sha)).to.deep.equal([before]);
    const tree = (ref: string) => git(["--git-dir", fixture.bareDir, "rev-parse", `${ref}^{tree}`]);
    expect(await tree(merge.data.sha)).to.equal(await tree(head));
  });

  it("answers 409 when the head moved since `sha`, 405 on a conflict, a closed PR, a block or a rebase", async () => {
    const { head } = await openPull();
    const moved = await commitToBare(fixture.bareDir, { "extra.txt": "x\n" }, "another push", {
      branch: BRANCH,
    });
    const stale = await rejection(
      octokit.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 1, sha: head }),
    );
    expect(stale.status).to.equal(409);
    expect(stale.data.message).to.equal("Head branch was modified. Review and try the merge again.");
    expect(
      (await octokit.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 })).data.head.sha,
    ).to.equal(moved);

    const rebase = await rejection(
      octokit.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 1, merge_method: "rebase" }),
    );
    expect(rebase.status).to.equal(405);

    sim.blockMerge(`${OWNER}/${REPO}`, 1, 'Required status check "ci" is expected.');
    await octokit.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 });
    expect(
      (await octokit.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 })).data.mergeable_state,
    ).to.equal("blocked");
    const blocked = await rejection(octokit.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 1 }));
    expect(blocked).to.deep.include({ status: 405 });
    expect(blocked.data.message).to.equal('Required status check "ci" is expected.');
    sim.blockMerge(`${OWNER}/${REPO}`, 1, undefined);

    // someone else changes the same line on main: a conflict
    await commitToBare(fixture.bareDir, { [VALUES]: 'image:\n  tag: "9.9.9"\n' }, "hotfix on main");
    await octokit.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 });
    const dirty = await octokit.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 });
    expect(dirty.data).to.include({ mergeable: false, mergeable_state: "dirty", merge_commit_sha: null });
    expect(
      (await rejection(octokit.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 1 }))).status,
    ).to.equal(405);

    await octokit.rest.pulls.update({ owner: OWNER, repo: REPO, pull_number: 1, state: "closed" });
    const closed = await rejection(octokit.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 1 }));
    expect(closed.status).to.equal(405);
    expect((await gitLog(fixture.bareDir))[0]?.subject).to.equal("hotfix on main");
  });

  it("refuses a second open PR for the same head, a PR without commits and an unknown head with 422", async () => {
    await openPull();
    const duplicate = await rejection(
      octokit.rest.pulls.create({ owner: OWNER, repo: REPO, head: BRANCH, base: "main", title: "again" }),
    );
    expect(duplicate.status).to.equal(422);
    expect(duplicate.data.message).to.equal("Validation Failed");
    expect(duplicate.data.errors).to.deep.equal([
      {
        resource: "PullRequest",
        code: "custom",
        message: `A pull request already exists for ${OWNER}:${BRANCH}.`,
      },
    ]);

    await commitToBare(fixture.bareDir, {}, "empty branch", { branch: "keptn/empty" });
    await git(["--git-dir", fixture.bareDir, "update-ref", "refs/heads/keptn/empty", "main"]);
    const empty = await rejection(
      octokit.rest.pulls.create({ owner: OWNER, repo: REPO, head: "keptn/empty", base: "main", title: "t" }),
    );
    expect(empty.data.errors).to.deep.equal([
      { resource: "PullRequest", code: "custom", message: "No commits between main and keptn/empty" },
    ]);

    const unknown = await rejection(
      octokit.rest.pulls.create({ owner: OWNER, repo: REPO, head: "nope", base: "main", title: "t" }),
    );
    expect(unknown.data.errors).to.deep.equal([{ resource: "PullRequest", field: "head", code: "invalid" }]);
  });

  it("lets a reviewer merge or close, so that waiting for the merge can be tested", async () => {
    const { head } = await openPull();
    const before = (await gitLog(fixture.bareDir))[0]?.sha ?? "";
    const sha = await sim.mergeAsReviewer(`${OWNER}/${REPO}`, 1);
    const pull = await octokit.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 });
    expect(pull.data).to.include({ merged: true, state: "closed", merge_commit_sha: sha });
    expect(pull.data.merged_by?.login).to.equal("reviewer");
    expect(await parentsOf(fixture.bareDir, sha)).to.deep.equal([before, head]);
    expect((await gitLog(fixture.bareDir))[0]?.author).to.match(/^reviewer </);

    await commitToBare(fixture.bareDir, { [VALUES]: 'image:\n  tag: "0.15.0"\n' }, "carts 0.15.0", {
      branch: "keptn/next",
    });
    const second = await octokit.rest.pulls.create({
      owner: OWNER,
      repo: REPO,
      head: "keptn/next",
      base: "main",
      title: "next",
    });
    await sim.closeAsReviewer(`${OWNER}/${REPO}`, second.data.number);
    const closed = await octokit.rest.pulls.get({
      owner: OWNER,
      repo: REPO,
      pull_number: second.data.number,
    });
    expect(closed.data).to.include({ state: "closed", merged: false, merged_at: null });
  });

  it("answers 401 in GitHub's shape without the right token", async () => {
    const none = await rejection(
      new Octokit({ baseUrl: sim.url, log: silent }).rest.pulls.list({ owner: OWNER, repo: REPO }),
    );
    expect(none.status).to.equal(401);
    expect(none.data).to.deep.equal({
      message: "Requires authentication",
      documentation_url: "https://docs.github.com/rest",
      status: "401",
    });
    const wrong = await rejection(
      new Octokit({ auth: "ghp_wrong", baseUrl: sim.url, log: silent }).rest.pulls.list({
        owner: OWNER,
        repo: REPO,
      }),
    );
    expect(wrong.data.message).to.equal("Bad credentials");
    const missing = await rejection(octokit.rest.pulls.get({ owner: OWNER, repo: "nope", pull_number: 1 }));
    expect(missing).to.deep.include({ status: 404 });
    expect(missing.data.message).to.equal("Not Found");
  });

  it("answers the secondary rate limit (403 and 429 with retry-after), the primary one, and injected failures", async () => {
    sim.rateLimitNext({ retryAfterSeconds: 7 });
    const secondary = await rejection(octokit.rest.pulls.list({ owner: OWNER, repo: REPO }));
    expect(secondary.status).to.equal(403);
    expect(secondary.headers["retry-after"]).to.equal("7");
    expect(secondary.data.message).to.match(/^You have exceeded a secondary rate limit/);
    expect(secondary.data.documentation_url).to.match(/#about-secondary-rate-limits$/);

    sim.rateLimitNext({ status: 429, retryAfterSeconds: 1 });
    const tooMany = await rejection(octokit.rest.pulls.list({ owner: OWNER, repo: REPO }));
    expect(tooMany.status).to.equal(429);
    expect(tooMany.headers["retry-after"]).to.equal("1");

    sim.rateLimitNext({ primary: true });
    const primary = await rejection(octokit.rest.pulls.list({ owner: OWNER, repo: REPO }));
    expect(primary.status).to.equal(403);
    expect(primary.headers["x-ratelimit-remaining"]).to.equal("0");
    expect(primary.headers["retry-after"]).to.equal(undefined);

    await commitToBare(fixture.bareDir, { [VALUES]: "x: 1\n" }, "bump", { branch: BRANCH });
    sim.injectFailures(2, 502);
    for (let i = 0; i < 2; i++) {
      const failed = await rejection(
        octokit.rest.pulls.create({ owner: OWNER, repo: REPO, head: BRANCH, base: "main", title: "t" }),
      );
      expect(failed.status).to.equal(502);
    }
    const created = await octokit.rest.pulls.create({
      owner: OWNER,
      repo: REPO,
      head: BRANCH,
      base: "main",
      title: "t",
    });
    expect(created.data.number, "failed calls were not processed").to.equal(1);
    expect(Number(created.headers["x-ratelimit-remaining"])).to.be.below(5000);
    expect(sim.requests.filter((r) => r.method === "POST").map((r) => r.path)).to.deep.equal(
      Array(3).fill(`/repos/${OWNER}/${REPO}/pulls`),
    );
  });

  it("serves the same API under /api/v3, as GitHub Enterprise does", async () => {
    await openPull();
    const enterprise = new Octokit({ auth: TOKEN, baseUrl: `${sim.url}/api/v3`, log: silent });
    const { data } = await enterprise.rest.pulls.list({ owner: OWNER, repo: REPO, state: "all" });
    expect(data.map((p) => p.number)).to.deep.equal([1]);
    expect(sim.requests.at(-1)?.path).to.equal(`/repos/${OWNER}/${REPO}/pulls`);
  });
});

describe("GitHubSimulator as GitHub App auth", function () {
  this.timeout(15000);

  const APP_ID = 4242;
  const INSTALLATION = 777;
  const appKeys = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const otherKeys = generateKeyPairSync("rsa", { modulusLength: 2048 });

  let fixture: GitopsFixture;
  let sim: GitHubSimulator;
  /** the simulator's clock, in ms; tests move it */
  let clock: number;

  beforeEach(async () => {
    fixture = await createGitopsFixture();
    clock = Date.UTC(2026, 10, 27, 12, 0, 0);
    sim = new GitHubSimulator({
      token: TOKEN,
      repositories: [{ owner: OWNER, repo: REPO, gitDir: fixture.bareDir }],
      apps: [
        {
          id: APP_ID,
          clientId: "Iv23liSimulatorApp",
          publicKey: appKeys.publicKey,
          installationIds: [INSTALLATION],
        },
      ],
      installationTokenLifetimeSeconds: 600,
      now: () => clock,
    });
    await sim.start();
  });

  afterEach(async () => {
    await sim.stop();
    expect(sim.errors, "internal simulator errors").to.deep.equal([]);
    await fixture.remove();
  });

  /** A JWT as GitHub documents it, with claims relative to the simulator's clock (seconds). */
  function jwt(
    claims: { iat?: unknown; exp?: unknown; iss?: unknown } = {},
    key: KeyObject = appKeys.privateKey,
  ) {
    const now = Math.floor(clock / 1000);
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const body = `${encode({ alg: "RS256", typ: "JWT" })}.${encode({ iat: now - 60, exp: now + 540, iss: APP_ID, ...claims })}`;
    return `${body}.${sign("RSA-SHA256", Buffer.from(body), key).toString("base64url")}`;
  }

  function asApp(token: string, baseUrl = sim.url) {
    return new Octokit({ auth: token, baseUrl, log: silent });
  }

  function exchange(token: string, installation = INSTALLATION, baseUrl = sim.url) {
    return asApp(token, baseUrl).rest.apps.createInstallationAccessToken({ installation_id: installation });
  }

  it("issues an installation token for a valid JWT, which then works on the other endpoints until it expires", async () => {
    const { status, data } = await exchange(jwt());
    expect(status).to.equal(201);
    expect(data.token).to.match(/^ghs_/);
    expect(data.expires_at).to.equal("2026-11-27T12:10:00Z");
    expect(sim.issuedTokens.map((t) => t.token)).to.deep.equal([data.token]);

    const pulls = await asApp(data.token).rest.pulls.list({ owner: OWNER, repo: REPO });
    expect(pulls.status).to.equal(200);

    clock += 600_000;
    const expired = await rejection(asApp(data.token).rest.pulls.list({ owner: OWNER, repo: REPO }));
    expect(expired).to.deep.include({ status: 401 });
    expect(expired.data.message).to.equal("Bad credentials");
  });

  it("accepts the client id and a numeric string as iss, and answers under /api/v3 too", async () => {
    expect((await exchange(jwt({ iss: "Iv23liSimulatorApp" }))).status).to.equal(201);
    expect((await exchange(jwt({ iss: String(APP_ID) }), INSTALLATION, `${sim.url}/api/v3`)).status).to.equal(
      201,
    );
    expect(sim.requests.at(-1)?.path).to.equal(`/app/installations/${INSTALLATION}/access_tokens`);
  });

  it("answers 401 for a JWT signed by another key, with bad times, or with a token instead of a JWT", async () => {
    const cases: [string, string][] = [
      [jwt({}, otherKeys.privateKey), "A JSON web token could not be decoded"],
      ["not-a-jwt", "A JSON web token could not be decoded"],
      [TOKEN, "A JSON web token could not be decoded"],
      [
        jwt({ exp: Math.floor(clock / 1000) + 601 }),
        "'Expiration time' claim ('exp') is too far in the future",
      ],
      [jwt({ exp: Math.floor(clock / 1000) - 1 }), "'Expiration time' claim ('exp') must be a numeric value"],
      [jwt({ iat: Math.floor(clock / 1000) + 30 }), "'Issued at' claim ('iat') must be an Integer"],
    ];
    for (const [credential, message] of cases) {
      const answer = await rejection(exchange(credential));
      expect(answer.status, message).to.equal(401);
      expect(answer.data.message).to.satisfy((text: string) => text.startsWith(message));
    }
    expect(sim.issuedTokens).to.deep.equal([]);
  });

  it("answers 404 for an installation the app does not have, and for an unknown app", async () => {
    const installation = await rejection(exchange(jwt(), 778));
    expect(installation.status).to.equal(404);
    expect(installation.data.message).to.equal("Not Found");
    const app = await rejection(exchange(jwt({ iss: 1 })));
    expect(app.status).to.equal(404);
    expect(app.data.message).to.equal("Integration not found");
  });
});
