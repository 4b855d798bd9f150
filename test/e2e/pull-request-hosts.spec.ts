import { expect } from "chai";
import { inspect } from "node:util";
import { RateLimitedError } from "../../src/gitops-repo/pull-requests/request-policy.js";
import type { RequestPolicy } from "../../src/gitops-repo/pull-requests/request-policy.js";
import { createPullRequestHost } from "../../src/gitops-repo/pull-requests/pull-request-hosts.js";
import type {
  PullRequestHost,
  PullRequestDraft,
} from "../../src/gitops-repo/pull-requests/pull-request-host.js";
import {
  DEFAULT_BRANCH_TEMPLATE,
  pullRequestBody,
  pullRequestBranch,
  pullRequestTitle,
} from "../../src/gitops-repo/pull-requests/pull-request-text.js";
import type { PullRequestContext } from "../../src/gitops-repo/pull-requests/pull-request-text.js";
import { TerminalError } from "../../src/shared/errors.js";
import { GitHubSimulator } from "../simulators/github/github-simulator.js";
import { GitLabSimulator } from "../simulators/gitlab/gitlab-simulator.js";
import { commitToBare, createGitopsFixture, git, gitLog, readFileAt } from "../support/gitops-fixture.js";
import type { GitopsFixture } from "../support/gitops-fixture.js";
import { rejection } from "../support/rejection.js";

// The same scenarios against both API simulators, each over a real bare repo: the branch is pushed with real git,
// reviewers merge for real, and the merge commit the host reports must be the head of main in the bare repo.

const TOKEN = "glpat-pullRequestHostsSpecToken-0123456789";
const WRONG_TOKEN = "ghp_wrongTokenThatMustNeverBePrinted01234";
const VALUES = "charts/carts/values-production.yaml";
/** Short waits, so that the retry scenarios stay fast. */
const POLICY: RequestPolicy = {
  attempts: 3,
  baseDelayMs: 10,
  maxDelayMs: 50,
  rateLimitRetries: 2,
  maxRateLimitWaitMs: 5_000,
};

/** One call the client made, with the time it left. */
interface Sent {
  at: number;
  method: string;
  url: string;
}

/** What a scenario may do with a host: the port under test, and the simulator's hooks in domain words. */
interface World {
  fixture: GitopsFixture;
  host: PullRequestHost;
  sent: Sent[];
  /** The same host with a wrong token. */
  withToken(token: string): PullRequestHost;
  /** The same host for a repository path the simulator does not have. */
  forMissingRepository(): PullRequestHost;
  reviewerMerges(number: number): Promise<string>;
  reviewerCloses(number: number): Promise<void>;
  rateLimitNext(retryAfterSeconds: number): void;
  failNext(count: number, status: number): void;
  /** The host's checks are running (GitLab: the head pipeline); undefined where the simulator has none. */
  checks?: (number: number, status: "running" | "success") => Promise<void>;
}

interface HostKind {
  name: "github" | "gitlab";
  start(fixture: GitopsFixture): Promise<{ world: Omit<World, "fixture">; stop(): Promise<void> }>;
}

function recordingFetch(sent: Sent[]): typeof globalThis.fetch {
  return (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    sent.push({ at: Date.now(), method: init?.method ?? "GET", url });
    return globalThis.fetch(input, init);
  };
}

const HOSTS: HostKind[] = [
  {
    name: "github",
    async start(fixture) {
      const sim = new GitHubSimulator({
        token: TOKEN,
        repositories: [{ owner: "sockshop", repo: "gitops", gitDir: fixture.bareDir }],
      });
      await sim.start();
      const sent: Sent[] = [];
      // GitHub Enterprise style: the API under /api/v3, given as apiUrl
      const make = (token: string, path = "sockshop/gitops") =>
        createPullRequestHost(
          { name: "gitops", url: `${sim.url}/${path}.git` },
          { provider: "github", apiUrl: `${sim.url}/api/v3`, tokenHeader: "private-token" },
          token,
          { fetch: recordingFetch(sent), policy: POLICY },
        );
      return {
        world: {
          host: make(TOKEN),
          sent,
          withToken: (token) => make(token),
          forMissingRepository: () => make(TOKEN, "sockshop/nothing-here"),
          reviewerMerges: (number) => sim.mergeAsReviewer("sockshop/gitops", number),
          reviewerCloses: (number) => sim.closeAsReviewer("sockshop/gitops", number),
          rateLimitNext: (seconds) => sim.rateLimitNext({ status: 403, retryAfterSeconds: seconds }),
          failNext: (count, status) => sim.injectFailures(count, status),
        },
        async stop() {
          await sim.stop();
          expect(sim.errors, "internal simulator errors").to.deep.equal([]);
        },
      };
    },
  },
  {
    name: "gitlab",
    async start(fixture) {
      const sim = new GitLabSimulator({
        token: TOKEN,
        projects: [{ id: 42, path: "sockshop/gitops", gitDir: fixture.bareDir }],
      });
      await sim.start();
      const sent: Sent[] = [];
      // no apiUrl: derived from the repository URL as <origin>/api/v4
      const make = (token: string, path = "sockshop/gitops") =>
        createPullRequestHost(
          { name: "gitops", url: `${sim.url}/${path}.git` },
          { provider: "gitlab", tokenHeader: "private-token" },
          token,
          { fetch: recordingFetch(sent), policy: POLICY },
        );
      return {
        world: {
          host: make(TOKEN),
          sent,
          withToken: (token) => make(token),
          forMissingRepository: () => make(TOKEN, "sockshop/nothing-here"),
          reviewerMerges: (number) => sim.mergeAsReviewer("sockshop/gitops", number),
          reviewerCloses: (number) => sim.closeAsReviewer("sockshop/gitops", number),
          rateLimitNext: (seconds) => sim.rateLimitNext({ retryAfterSeconds: seconds }),
          failNext: (count, status) => sim.injectFailures(count, status),
          checks: (number, status) => sim.setPipeline("sockshop/gitops", number, status),
        },
        async stop() {
          await sim.stop();
          expect(sim.errors, "internal simulator errors").to.deep.equal([]);
        },
      };
    },
  },
];

const keptn: PullRequestContext = {
  project: "sockshop",
  stage: "production",
  service: "carts",
  image: "docker.io/keptnexamples/carts:0.13.3",
  shkeptncontext: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
  triggeredId: "5f1b7c3e-0a2d-4e8f-9b6a-1c2d3e4f5a6b",
  files: [{ file: VALUES, changes: ['image.tag: "0.13.1" -> "0.13.3"'] }],
  mode: "wait-for-merge",
};

/** Pushes the change to the deployment's branch with real git, as the service will; returns the draft. */
async function pushBranch(
  fixture: GitopsFixture,
  context: PullRequestContext = keptn,
): Promise<PullRequestDraft> {
  const branch = pullRequestBranch(DEFAULT_BRANCH_TEMPLATE, context);
  const tag = context.image?.split(":").at(-1) ?? "0.13.1";
  const values = (await readFileAt(fixture.bareDir, "main", VALUES)).replace(
    'tag: "0.13.1"',
    `tag: "${tag}"`,
  );
  await commitToBare(fixture.bareDir, { [VALUES]: values }, pullRequestTitle(context), { branch });
  return { branch, base: "main", title: pullRequestTitle(context), body: pullRequestBody(context) };
}

const SCENARIOS: { name: string; run(world: World): Promise<void> }[] = [
  {
    name: "opens, updates the same pull request, and reports the reviewer's merge commit that is in the repo",
    async run({ fixture, host, reviewerMerges }) {
      const draft = await pushBranch(fixture);
      expect(draft.branch).to.equal("keptn/sockshop/production/carts");
      const opened = await host.ensurePullRequest(draft);
      expect(opened).to.deep.include({ state: "open", created: true });
      expect(opened.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/sockshop\/gitops\//);

      const newer = { ...keptn, image: "docker.io/keptnexamples/carts:0.13.4" };
      const again = await pushBranch(fixture, newer);
      const updated = await host.ensurePullRequest(again);
      expect(updated).to.deep.equal({ ...opened, created: false });
      const open = await host.get(opened.number);
      expect(open).to.deep.include({ state: "open", title: again.title });
      expect(again.title).to.not.equal(draft.title);

      const merged = await reviewerMerges(opened.number);
      const status = await host.get(opened.number);
      expect(status).to.deep.include({ number: opened.number, state: "merged", mergeCommit: merged });
      const [head] = await gitLog(fixture.bareDir, "main");
      expect(head?.sha).to.equal(status.mergeCommit);
      expect(await readFileAt(fixture.bareDir, status.mergeCommit ?? "", VALUES)).to.include('tag: "0.13.4"');
      // a real merge of the branch: its head is a parent of the merge commit
      const parents = await git(["--git-dir", fixture.bareDir, "rev-list", "--parents", "-n", "1", merged]);
      expect(parents.trim().split(" ").slice(1)).to.include(open.headSha);
    },
  },
  {
    name: "updates title and body of the open pull request",
    async run({ fixture, host }) {
      const opened = await host.ensurePullRequest(await pushBranch(fixture));
      const draft = { ...(await pushBranch(fixture)), title: "Deploy carts again", body: "new body" };
      expect((await host.ensurePullRequest(draft)).number).to.equal(opened.number);
      // a second identical call changes nothing and still finds it
      expect(await host.ensurePullRequest(draft)).to.deep.include({ number: opened.number, created: false });
    },
  },
  {
    name: "reports a pull request closed without merge as closed, and opens a new one afterwards",
    async run({ fixture, host, reviewerCloses }) {
      const draft = await pushBranch(fixture);
      const opened = await host.ensurePullRequest(draft);
      await reviewerCloses(opened.number);
      const status = await host.get(opened.number);
      expect(status.state).to.equal("closed");
      expect(status.mergeCommit).to.equal(undefined);
      const next = await host.ensurePullRequest(draft);
      expect(next.created).to.equal(true);
      expect(next.number).to.not.equal(opened.number);
    },
  },
  {
    name: "merges itself: a moved head is an answer, then a real merge commit on main",
    async run({ fixture, host }) {
      const draft = await pushBranch(fixture);
      const opened = await host.ensurePullRequest(draft);
      const stale = (await host.get(opened.number)).headSha;
      await pushBranch(fixture, { ...keptn, image: "docker.io/keptnexamples/carts:0.13.5" });
      const moved = await host.merge(opened.number, { sha: stale });
      expect(moved.outcome).to.equal("head-moved");

      const merged = await host.merge(opened.number);
      expect(merged.outcome).to.equal("merged");
      const [head] = await gitLog(fixture.bareDir, "main");
      expect(merged).to.deep.equal({ outcome: "merged", commit: head?.sha });
      // merging again is not an error: it is merged
      expect(await host.merge(opened.number)).to.deep.equal(merged);
    },
  },
  {
    name: "answers not-mergeable for a closed pull request, and close is idempotent",
    async run({ fixture, host }) {
      const opened = await host.ensurePullRequest(await pushBranch(fixture));
      await host.close(opened.number);
      await host.close(opened.number);
      expect((await host.get(opened.number)).state).to.equal("closed");
      expect((await host.merge(opened.number)).outcome).to.equal("not-mergeable");
    },
  },
  {
    name: "enables auto-merge where the host has it, and says so clearly where not",
    async run({ fixture, host, checks }) {
      const opened = await host.ensurePullRequest(await pushBranch(fixture));
      if (!host.supportsAutoMerge || checks === undefined) {
        const error = await rejection(host.enableAutoMerge(opened.number));
        expect(error).to.be.instanceOf(TerminalError);
        expect(error.message).to.include("cannot enable auto-merge");
        return;
      }
      await checks(opened.number, "running");
      expect(await host.enableAutoMerge(opened.number)).to.deep.equal({ outcome: "scheduled" });
      expect((await host.get(opened.number)).state).to.equal("open");
      await checks(opened.number, "success");
      const status = await host.get(opened.number);
      const [head] = await gitLog(fixture.bareDir, "main");
      expect(status).to.deep.include({ state: "merged", mergeCommit: head?.sha });
    },
  },
  {
    name: "waits out a rate limit for as long as retry-after says, then retries",
    async run({ fixture, host, sent, rateLimitNext }) {
      const draft = await pushBranch(fixture);
      rateLimitNext(1);
      const started = sent.length;
      const opened = await host.ensurePullRequest(draft);
      expect(opened.created).to.equal(true);
      const [limited, retried] = sent.slice(started);
      expect(limited?.url).to.equal(retried?.url);
      expect((retried?.at ?? 0) - (limited?.at ?? 0))
        .to.be.at.least(1000)
        .and.below(3000);
    },
  },
  {
    name: "gives up on a rate limit that asks for a longer wait than allowed",
    async run({ host, rateLimitNext }) {
      rateLimitNext(3600);
      const started = Date.now();
      const error = await rejection(host.get(1));
      expect(error).to.be.instanceOf(RateLimitedError);
      expect((error as RateLimitedError).waitMs).to.equal(3_600_000);
      expect(Date.now() - started).to.be.below(1000);
    },
  },
  {
    name: "stops waiting out a rate limit when the caller aborts",
    async run({ fixture, host, rateLimitNext }) {
      const draft = await pushBranch(fixture);
      rateLimitNext(3);
      const controller = new AbortController();
      const started = Date.now();
      setTimeout(() => controller.abort(new Error("the deployment was cancelled")), 100);
      const error = await rejection(host.ensurePullRequest(draft, controller.signal));
      expect(error.message).to.equal("the deployment was cancelled");
      expect(Date.now() - started).to.be.below(1000);
    },
  },
  {
    name: "retries a 502 with backoff",
    async run({ fixture, host, failNext }) {
      const draft = await pushBranch(fixture);
      failNext(2, 502);
      expect((await host.ensurePullRequest(draft)).created).to.equal(true);
    },
  },
  {
    name: "refuses a wrong token with a TerminalError that says what to check and never shows the token",
    async run({ fixture, withToken }) {
      const draft = await pushBranch(fixture);
      const error = await rejection(withToken(WRONG_TOKEN).ensurePullRequest(draft));
      expect(error).to.be.instanceOf(TerminalError);
      expect(error.message).to.include("rejected the token (401");
      expect(error.message).to.include('check the pull-request token of repository "gitops"');
      expect(inspect(error, { depth: 10 })).to.not.include(WRONG_TOKEN);
      expect(inspect(error, { depth: 10 })).to.not.include(TOKEN);
    },
  },
  {
    name: "says to check the repository path when the repository is not there",
    async run({ forMissingRepository }) {
      const error = await rejection(forMissingRepository().get(1));
      expect(error).to.be.instanceOf(TerminalError);
      expect(error.message).to.include("sockshop/nothing-here");
      expect(error.message).to.include('check the URL of repository "gitops"');
    },
  },
  {
    name: "refuses to open a pull request for a branch that was never pushed",
    async run({ host }) {
      const error = await rejection(
        host.ensurePullRequest({ branch: "keptn/never/pushed", base: "main", title: "t", body: "b" }),
      );
      expect(error).to.be.instanceOf(TerminalError);
    },
  },
];

for (const kind of HOSTS) {
  describe(`pull-request hosts: ${kind.name}`, function () {
    this.timeout(20_000);
    let fixture: GitopsFixture;
    let world: World;
    let stop: () => Promise<void>;

    beforeEach(async () => {
      fixture = await createGitopsFixture();
      const started = await kind.start(fixture);
      world = { fixture, ...started.world };
      stop = started.stop;
    });

    afterEach(async () => {
      await stop();
      await fixture.remove();
    });

    for (const scenario of SCENARIOS) it(scenario.name, () => scenario.run(world));
  });
}

describe("pull-request hosts: gitlab with an OAuth token", () => {
  it("sends the token as Authorization: Bearer when tokenHeader is bearer", async () => {
    const fixture = await createGitopsFixture();
    const sim = new GitLabSimulator({
      token: TOKEN,
      projects: [{ id: 42, path: "sockshop/gitops", gitDir: fixture.bareDir }],
    });
    try {
      await sim.start();
      const host = createPullRequestHost(
        { name: "gitops", url: `${sim.url}/sockshop/gitops.git` },
        { provider: "gitlab", tokenHeader: "bearer" },
        TOKEN,
        { policy: POLICY },
      );
      const opened = await host.ensurePullRequest(await pushBranch(fixture));
      expect(opened.created).to.equal(true);
    } finally {
      await sim.stop();
      await fixture.remove();
    }
  });
});
