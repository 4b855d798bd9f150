import { expect } from "chai";
import { generateKeyPairSync } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { GitHubSimulator } from "../simulators/github/github-simulator.js";
import { GitLabSimulator } from "../simulators/gitlab/gitlab-simulator.js";
import { git, gitLog, readFileAt } from "../support/gitops-fixture.js";
import { DeploymentWorld, worldFor, type PullRequestHostWorld } from "./world.js";

// Pull-request mode end to end: deployment.triggered on NATS, the commit pushed with real git to the deployment's
// branch, the pull request opened through the GitHub or GitLab API simulator, merged for real in the bare repo by
// a "reviewer", the Argo CD simulator syncing the merge commit, and deployment.finished on NATS.

const PR_TOKEN = "glpat-e2ePullRequestToken-0123456789ab";
const VALUES = "charts/carts/values-production.yaml";
const OVERLAY = "overlays/production/carts/kustomization.yaml";
const overlay = `# carts in production: the image pinned by Keptn
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../manifests/production/orders
images:
  - name: docker.io/keptnexamples/carts
    newTag: "0.13.1" # set by Keptn
`;

/** A pull request as a reviewer sees it on the host (read through the host's REST API, not the service). */
interface Review {
  number: number;
  branch: string;
  state: "open" | "merged" | "closed";
  title: string;
  body: string;
  url: string;
  headSha: string;
}

interface Reviewer {
  /** The pull requests of the repository, newest last. */
  list(): Promise<Review[]>;
  merge(number: number): Promise<string>;
  close(number: number): Promise<void>;
  /** The host's checks pass (GitLab: the head pipeline succeeds); undefined where there are none. */
  passChecks?(number: number): Promise<void>;
  /** Resolves once the service has asked to merge `number` and has read it again since (it is waiting). */
  waitingAfterMerge?(number: number): Promise<void>;
  rateLimitNext(seconds: number): void;
}

interface HostKind {
  name: "github" | "gitlab";
  start(bareDir: string): Promise<PullRequestHostWorld & { reviewer: Reviewer }>;
}

async function getJson(url: string, headers: Record<string, string>): Promise<unknown> {
  const response = await fetch(url, { headers });
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

const appKeys = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  publicKeyEncoding: { type: "spki", format: "pem" },
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
});

const HOSTS: HostKind[] = [
  {
    name: "github",
    async start(bareDir) {
      const sim = new GitHubSimulator({
        token: PR_TOKEN,
        repositories: [{ owner: "sockshop", repo: "gitops", gitDir: bareDir }],
        apps: [{ id: 4242, publicKey: appKeys.publicKey, installationIds: [77] }],
      });
      await sim.start();
      const apiUrl = `${sim.url}/api/v3`;
      type Pull = {
        number: number;
        state: string;
        merged_at: string | null;
        title: string;
        body: string;
        html_url: string;
        head: { ref: string; sha: string };
      };
      return {
        provider: "github",
        apiUrl,
        token: PR_TOKEN,
        app: { id: 4242, installationId: 77, privateKey: appKeys.privateKey },
        issuedTokens: () => sim.issuedTokens.map((issued) => issued.token),
        reviewer: {
          async list() {
            const pulls = (await getJson(`${apiUrl}/repos/sockshop/gitops/pulls?state=all&per_page=100`, {
              authorization: `token ${PR_TOKEN}`,
            })) as Pull[];
            return pulls
              .map((p) => ({
                number: p.number,
                branch: p.head.ref,
                state: p.merged_at
                  ? ("merged" as const)
                  : p.state === "open"
                    ? ("open" as const)
                    : ("closed" as const),
                title: p.title,
                body: p.body,
                url: p.html_url,
                headSha: p.head.sha,
              }))
              .sort((a, b) => a.number - b.number);
          },
          merge: (number) => sim.mergeAsReviewer("sockshop/gitops", number),
          close: (number) => sim.closeAsReviewer("sockshop/gitops", number),
          rateLimitNext: (seconds) => sim.rateLimitNext({ status: 403, retryAfterSeconds: seconds }),
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
    async start(bareDir) {
      const sim = new GitLabSimulator({
        token: PR_TOKEN,
        projects: [{ id: 42, path: "sockshop/gitops", gitDir: bareDir, pipelineOnOpen: true }],
      });
      await sim.start();
      const apiUrl = `${sim.url}/api/v4`;
      type MergeRequest = {
        iid: number;
        state: string;
        title: string;
        description: string;
        web_url: string;
        source_branch: string;
        sha: string;
      };
      return {
        provider: "gitlab",
        apiUrl,
        token: PR_TOKEN,
        issuedTokens: () => [],
        reviewer: {
          async list() {
            const requests = (await getJson(`${apiUrl}/projects/42/merge_requests?state=all&per_page=100`, {
              "private-token": PR_TOKEN,
            })) as MergeRequest[];
            return requests
              .map((mr) => ({
                number: mr.iid,
                branch: mr.source_branch,
                state:
                  mr.state === "opened"
                    ? ("open" as const)
                    : mr.state === "merged"
                      ? ("merged" as const)
                      : ("closed" as const),
                title: mr.title,
                body: mr.description,
                url: mr.web_url,
                headSha: mr.sha,
              }))
              .sort((a, b) => a.number - b.number);
          },
          merge: (number) => sim.mergeAsReviewer("sockshop/gitops", number),
          close: (number) => sim.closeAsReviewer("sockshop/gitops", number),
          passChecks: (number) => sim.setPipeline("sockshop/gitops", number, "success"),
          async waitingAfterMerge(number) {
            // The service names the project by its path (sockshop%2Fgitops), as it is in the repository URL.
            const path = `/merge_requests/${number}`;
            for (;;) {
              const asked = sim.requests.findIndex(
                (r) => r.method === "PUT" && r.path.endsWith(`${path}/merge`),
              );
              if (
                asked >= 0 &&
                sim.requests.slice(asked).some((r) => r.method === "GET" && r.path.endsWith(path))
              )
                return;
              await sleep(10);
            }
          },
          rateLimitNext: (seconds) => sim.rateLimitNext({ retryAfterSeconds: seconds }),
        },
        async stop() {
          await sim.stop();
          expect(sim.errors, "internal simulator errors").to.deep.equal([]);
        },
      };
    },
  },
];

for (const kind of HOSTS) {
  describe(`pull-request mode on ${kind.name} (NATS -> git branch -> ${kind.name} API simulator -> merge -> Argo CD simulator)`, function () {
    this.timeout(60_000);
    let reviewer: Reviewer;
    const world = worldFor(() =>
      DeploymentWorld.start({
        extraFiles: { [OVERLAY]: overlay },
        pullRequests: async (bareDir) => {
          const host = await kind.start(bareDir);
          reviewer = host.reviewer;
          return host;
        },
      }),
    );
    /** How the service names a pull request in its messages: GitLab's are merge requests. */
    const named = (review: Review) =>
      kind.name === "gitlab"
        ? `merge request !${review.number} (${review.url})`
        : `pull request #${review.number} (${review.url})`;
    const main = async () => (await gitLog(world().fixture.bareDir))[0]!.sha;

    /** Waits until the host has an open pull request from `branch` (that also passes `test`); returns it. */
    async function openPullRequest(
      branch: string,
      test: (review: Review) => boolean = () => true,
    ): Promise<Review> {
      for (let waited = 0; waited < 15_000; waited += 25) {
        const open = (await reviewer.list()).find(
          (p) => p.branch === branch && p.state === "open" && test(p),
        );
        if (open) return open;
        await sleep(25);
      }
      throw new Error(`no open pull request from ${branch}`);
    }

    it("opens a pull request, waits for the reviewer's merge, then for the sync of the merge commit, and answers pass", async () => {
      const before = await main();
      const { id, shkeptncontext } = world().trigger({
        project: "sockshop-pr",
        stage: "production",
        image: "docker.io/keptnexamples/carts:0.13.5",
      });
      const review = await openPullRequest("keptn/sockshop-pr/production/carts");
      expect(review.title).to.equal(
        "Deploy carts docker.io/keptnexamples/carts:0.13.5 to sockshop-pr/production",
      );
      expect(review.body)
        .to.include(`\`${VALUES}\`:\n\n- \`image.tag: 0.13.1 -> 0.13.5\``)
        .and.include(`Keptn-Context: ${shkeptncontext}\nKeptn-Triggered-Id: ${id}`);
      expect(await readFileAt(world().fixture.bareDir, review.headSha, VALUES)).to.include('tag: "0.13.5"');
      expect(await main(), "main is untouched until the merge").to.equal(before);
      expect(
        world()
          .answersSoFar(id)
          .map((e) => e.type),
      ).to.deep.equal(["sh.keptn.event.deployment.started"]);

      const mergeCommit = await reviewer.merge(review.number);
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment!.gitCommit).to.equal(mergeCommit);
      expect(await main()).to.equal(mergeCommit);
      expect(finished.data.message).to.match(
        new RegExp(
          `^Pushed image\\.tag: 0\\.13\\.1 -> 0\\.13\\.5 in ${VALUES} as ${review.headSha.slice(0, 7)} to branch keptn/sockshop-pr/production/carts; ` +
            `${named(review).replace(/[.?()!]/g, "\\$&")} was merged into main as ${mergeCommit.slice(0, 7)}\\. `,
        ),
      );
      expect(finished.data.message).to.include("Healthy");
    });

    it("answers fail when the pull request is closed without merging, and main keeps its head", async () => {
      const before = await main();
      const { id } = world().trigger({
        project: "sockshop-pr",
        stage: "production",
        image: "docker.io/keptnexamples/carts:0.13.6",
      });
      const review = await openPullRequest("keptn/sockshop-pr/production/carts");
      await reviewer.close(review.number);
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "fail" });
      expect(finished.data.message).to.equal(
        `${named(review)} was closed without merging; ${review.headSha.slice(0, 7)} was not deployed`,
      );
      expect(finished.data.deployment!.gitCommit).to.equal(review.headSha);
      expect(await main()).to.equal(before);
    });

    it("open-only: answers pass once the pull request is open, with its URL, and merges nothing", async () => {
      const before = await main();
      const { id } = world().trigger({
        project: "sockshop-pr-open",
        stage: "production",
        image: "docker.io/keptnexamples/carts:0.13.7",
      });
      const { finished } = await world().answersFor(id);
      const review = (await reviewer.list()).find(
        (p) => p.branch === "keptn/sockshop-pr-open/production/carts",
      )!;
      expect(review.state).to.equal("open");
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment!.gitCommit).to.equal(review.headSha);
      expect(finished.data.message).to.equal(
        `Pushed image.tag: 0.13.5 -> 0.13.7 in ${VALUES} as ${review.headSha.slice(0, 7)} to branch keptn/sockshop-pr-open/production/carts ` +
          `and opened ${named(review)} into main. Not waiting for the merge (pullRequest mode open-only): merging it deploys the change.`,
      );
      expect(await main()).to.equal(before);
      await reviewer.close(review.number);
    });

    it("a newer deployment of the same service replaces the branch: the older one answers fail, the newer one is deployed", async () => {
      const first = world().trigger({
        project: "sockshop-pr",
        stage: "production",
        image: "docker.io/keptnexamples/carts:0.14.0",
      });
      const older = await openPullRequest("keptn/sockshop-pr/production/carts");
      const second = world().trigger({
        project: "sockshop-pr",
        stage: "production",
        image: "docker.io/keptnexamples/carts:0.14.1",
      });
      const { finished: replaced } = await world().answersFor(first.id);
      expect(replaced.data).to.include({ status: "succeeded", result: "fail" });
      expect(replaced.data.message).to.match(
        new RegExp(
          `^${named(older).replace(/[.?()!]/g, "\\$&")} no longer holds ${older.headSha.slice(0, 7)}: a newer deployment of the same service replaced it`,
        ),
      );
      // The service pushes the branch, then updates the title: the update is what is waited for.
      const newer = await openPullRequest("keptn/sockshop-pr/production/carts", (p) =>
        p.title.includes("carts:0.14.1"),
      );
      expect(newer.number, "the same pull request, updated").to.equal(older.number);
      expect(newer.headSha).not.to.equal(older.headSha);
      const mergeCommit = await reviewer.merge(newer.number);
      const { finished } = await world().answersFor(second.id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment!.gitCommit).to.equal(mergeCommit);
      expect(await readFileAt(world().fixture.bareDir, "main", VALUES)).to.include('tag: "0.14.1"');
    });

    it("rides out a rate limit while waiting for the merge", async () => {
      const { id } = world().trigger({
        project: "sockshop-pr",
        stage: "production",
        image: "docker.io/keptnexamples/carts:0.14.2",
      });
      const review = await openPullRequest("keptn/sockshop-pr/production/carts");
      reviewer.rateLimitNext(1);
      const mergeCommit = await reviewer.merge(review.number);
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment!.gitCommit).to.equal(mergeCommit);
    });

    it("several files in one deployment go into one commit and one pull request", async () => {
      const { id } = world().trigger({
        project: "sockshop-pr-multi",
        stage: "production",
        image: "docker.io/keptnexamples/carts:0.15.0",
      });
      const review = await openPullRequest("keptn/sockshop-pr-multi/production/carts");
      const files = (
        await git(["--git-dir", world().fixture.bareDir, "show", "--name-only", "--format=", review.headSha])
      )
        .split("\n")
        .filter(Boolean);
      expect(files).to.deep.equal([OVERLAY, VALUES].sort());
      expect(await readFileAt(world().fixture.bareDir, review.headSha, OVERLAY)).to.equal(
        overlay.replace('newTag: "0.13.1"', 'newTag: "0.15.0"'),
      );
      expect(review.body).to.include(`\`${VALUES}\`:`).and.include(`\`${OVERLAY}\`:`);
      await reviewer.merge(review.number);
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.message).to.match(
        new RegExp(
          `^Pushed image\\.tag: 0\\.14\\.2 -> 0\\.15\\.0 in ${VALUES}; .*0\\.13\\.1 -> 0\\.15\\.0 in ${OVERLAY} as `,
        ),
      );
    });

    it("pullRequest: false on a target pushes straight to main", async () => {
      const pulls = (await reviewer.list()).length;
      const { id } = world().trigger({
        project: "sockshop-pr-direct",
        stage: "production",
        image: "docker.io/keptnexamples/carts:0.16.0",
      });
      const { finished } = await world().answersFor(id);
      expect(finished.data).to.include({ status: "succeeded", result: "pass" });
      expect(finished.data.deployment!.gitCommit).to.equal(await main());
      expect(await reviewer.list()).to.have.length(pulls);
    });

    if (kind.name === "gitlab") {
      it("auto-merge: the merge request merges itself when the pipeline passes, then the merge commit is synced", async () => {
        const { id } = world().trigger({
          project: "sockshop-pr-auto",
          stage: "production",
          image: "docker.io/keptnexamples/carts:0.17.0",
        });
        const review = await openPullRequest("keptn/sockshop-pr-auto/production/carts");
        // The pipeline is running: the merge waits for it, and so does the deployment.
        await reviewer.waitingAfterMerge!(review.number);
        expect(
          world()
            .answersSoFar(id)
            .map((e) => e.type),
        ).to.deep.equal(["sh.keptn.event.deployment.started"]);
        await reviewer.passChecks!(review.number);
        const { finished } = await world().answersFor(id);
        expect(finished.data).to.include({ status: "succeeded", result: "pass" });
        expect(finished.data.deployment!.gitCommit).to.equal(await main());
        expect((await reviewer.list()).find((p) => p.number === review.number)!.state).to.equal("merged");
      });
    } else {
      it("a GitHub App: git pushes and the pull request use installation tokens, which never show in events or logs", async () => {
        const { id } = world().trigger({
          project: "sockshop-app",
          stage: "production",
          image: "docker.io/keptnexamples/carts:0.18.0",
        });
        const review = await openPullRequest("keptn/sockshop-app/production/carts");
        const mergeCommit = await reviewer.merge(review.number);
        const { finished } = await world().answersFor(id);
        expect(finished.data).to.include({ status: "succeeded", result: "pass" });
        expect(finished.data.deployment!.gitCommit).to.equal(mergeCommit);
        // The git server takes the app's installation tokens besides its own token: the push used one.
        const issued = world().pullRequestHost!.issuedTokens();
        expect(issued, "installation tokens issued").to.have.length.greaterThan(0);
        const seen = world().logLines.join("\n") + JSON.stringify(world().answersSoFar(id));
        for (const token of issued) expect(seen).not.to.include(token);
      });
    }
  });
}
