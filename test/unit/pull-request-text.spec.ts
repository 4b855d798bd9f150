import { expect } from "chai";
import { RetryableError, TerminalError } from "../../src/shared/errors.js";
import { rateLimitWait } from "../../src/gitops-repo/pull-requests/github-pull-request-host.js";
import { choosePullRequestTarget } from "../../src/gitops-repo/pull-requests/pull-request-hosts.js";
import {
  branchTemplateProblems,
  pullRequestBody,
  pullRequestBranch,
  pullRequestTitle,
} from "../../src/gitops-repo/pull-requests/pull-request-text.js";
import type { PullRequestContext } from "../../src/gitops-repo/pull-requests/pull-request-text.js";
import { parseRepositoryUrl } from "../../src/gitops-repo/pull-requests/repository-url.js";
import {
  callWithPolicy,
  RateLimitedError,
  retryAfterMs,
} from "../../src/gitops-repo/pull-requests/request-policy.js";
import { pullRequestConfigSchema } from "../../src/gitops-repo/pull-requests/schema.js";
import { rejection } from "../support/rejection.js";

const context: PullRequestContext = {
  project: "sockshop",
  stage: "production",
  service: "carts",
  image: "docker.io/keptnexamples/carts:0.13.3",
  shkeptncontext: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
  triggeredId: "5f1b7c3e-0a2d-4e8f-9b6a-1c2d3e4f5a6b",
  files: [{ file: "charts/carts/values-production.yaml", changes: ["image.tag: 0.13.1 -> 0.13.3"] }],
};

describe("pull requests: branch, title and body", () => {
  it("names the branch after the target, the same every time", () => {
    const fields = { project: "sockshop", stage: "production", service: "carts" };
    expect(pullRequestBranch("keptn/{project}/{stage}/{service}", fields)).to.equal(
      "keptn/sockshop/production/carts",
    );
    expect(pullRequestBranch("deploy/{stage}-{service}", fields)).to.equal("deploy/production-carts");
  });

  it("never lets a field add a slash or what git refuses in a branch name", () => {
    const branch = pullRequestBranch("keptn/{project}/{stage}/{service}", {
      project: "a/b",
      stage: "..hidden",
      service: "x y~z.lock",
    });
    expect(branch).to.equal("keptn/a-b/hidden/x-y-z");
  });

  it("refuses templates that would mix targets or make no branch", () => {
    expect(branchTemplateProblems("keptn/{project}/{stage}/{service}")).to.deep.equal([]);
    expect(branchTemplateProblems("keptn/{project}/{service}")).to.deep.equal([
      "{stage} is missing: every stage and service needs a branch of its own",
    ]);
    expect(branchTemplateProblems("keptn/{stage}/{service}/{labels}")[0]).to.equal(
      "unknown placeholders {labels}",
    );
    expect(branchTemplateProblems("keptn..{stage}/{service}")).to.have.length(1);
  });

  it("says in the title what changes: service, image, project and stage", () => {
    expect(pullRequestTitle(context)).to.equal(
      "Deploy carts docker.io/keptnexamples/carts:0.13.3 to sockshop/production",
    );
    const noImage = {
      ...context,
      image: undefined,
      files: [{ file: "v.yaml", changes: ["a: 1 -> 2", "b: x -> y"] }],
    };
    expect(pullRequestTitle(noImage)).to.equal("Deploy carts to sockshop/production (2 values changed)");
    expect(pullRequestTitle({ ...context, image: "x".repeat(400) })).to.have.length(255);
  });

  it("lists the changed values and the Keptn context in the body, with the trailers last", () => {
    const body = pullRequestBody({
      ...context,
      labels: { ticket: "OPS-42", buildId: "a|b" },
      bridgeUrl: "https://keptn.example.com/bridge/",
      mode: "wait-for-merge",
    });
    expect(body).to
      .equal(`Keptn asked for a deployment of service **carts** in stage **production** of project **sockshop**.

Image: \`docker.io/keptnexamples/carts:0.13.3\`

### Changes

\`charts/carts/values-production.yaml\`:

- \`image.tag: 0.13.1 -> 0.13.3\`

### Keptn

| | |
| --- | --- |
| Project | sockshop |
| Stage | production |
| Service | carts |
| Context | [\`0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0\`](https://keptn.example.com/bridge/trace/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0) |
| Triggered event | \`5f1b7c3e-0a2d-4e8f-9b6a-1c2d3e4f5a6b\` |
| Label buildId | a\\|b |
| Label ticket | OPS-42 |

Keptn waits for this pull request: merging it deploys the change, closing it without merging fails the deployment.

Keptn-Context: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0
Keptn-Triggered-Id: 5f1b7c3e-0a2d-4e8f-9b6a-1c2d3e4f5a6b
`);
  });

  it("keeps a value with backticks inside its code span", () => {
    const body = pullRequestBody({ ...context, files: [{ file: "f.yaml", changes: ["cmd: `a` -> b"] }] });
    expect(body).to.include("- ``cmd: `a` -> b``");
  });
});

describe("pull requests: which host", () => {
  const repo = (url: string) => ({ name: "gitops", url });

  it("reads host and path from https, ssh and scp-like URLs", () => {
    expect(parseRepositoryUrl("https://github.com/sockshop/gitops.git")).to.deep.equal({
      host: "github.com",
      origin: "https://github.com",
      path: "sockshop/gitops",
    });
    expect(parseRepositoryUrl("git@gitlab.com:group/sub/project.git")).to.deep.equal({
      host: "gitlab.com",
      path: "group/sub/project",
    });
    expect(parseRepositoryUrl("ssh://git@GHE.example.com:2222/o/r")).to.deep.equal({
      host: "ghe.example.com",
      path: "o/r",
    });
    expect(parseRepositoryUrl("not a url")).to.equal(undefined);
  });

  it("chooses GitHub for github.com and GitLab for gitlab.com", () => {
    expect(choosePullRequestTarget(repo("https://github.com/sockshop/gitops.git"), {})).to.deep.equal({
      provider: "github",
      apiUrl: "https://api.github.com",
      path: "sockshop/gitops",
    });
    expect(choosePullRequestTarget(repo("git@gitlab.com:sockshop/deploy/gitops.git"), {})).to.deep.equal({
      provider: "gitlab",
      apiUrl: "https://gitlab.com/api/v4",
      path: "sockshop/deploy/gitops",
    });
  });

  it("takes the configured provider and API, with the Enterprise and self-managed defaults", () => {
    expect(
      choosePullRequestTarget(repo("https://ghe.example.com/sockshop/gitops.git"), { provider: "github" }),
    ).to.deep.include({ apiUrl: "https://ghe.example.com/api/v3" });
    expect(
      choosePullRequestTarget(repo("https://example.com/gitlab/sockshop/gitops.git"), {
        provider: "gitlab",
        apiUrl: "https://example.com/gitlab/api/v4/",
      }),
    ).to.deep.equal({
      provider: "gitlab",
      apiUrl: "https://example.com/gitlab/api/v4",
      path: "sockshop/gitops",
    });
  });

  it("says what to configure when the host is unknown or the path does not fit", () => {
    expect(() => choosePullRequestTarget(repo("https://git.example.com/a/b.git"), {}))
      .to.throw(TerminalError)
      .with.property("message")
      .that.includes("set pullRequest.provider to github or gitlab");
    expect(() => choosePullRequestTarget(repo("https://github.com/a/b/c.git"), {})).to.throw(
      TerminalError,
      'a GitHub repository URL ends in <owner>/<repo>, not "a/b/c"',
    );
  });
});

describe("pull requests: configuration", () => {
  it("fills the defaults", () => {
    expect(pullRequestConfigSchema.parse({ token: { fromEnv: "GITHUB_TOKEN" } })).to.deep.equal({
      token: { fromEnv: "GITHUB_TOKEN" },
      tokenHeader: "private-token",
      branchTemplate: "keptn/{project}/{stage}/{service}",
      mode: "wait-for-merge",
      mergeMethod: "merge",
      pollInterval: 30_000,
    });
  });

  it("refuses auto-merge on GitHub, a bad template and a token in the file", () => {
    const result = pullRequestConfigSchema.safeParse({
      provider: "github",
      mode: "auto-merge",
      token: "ghp_secret",
      branchTemplate: "keptn/{service}",
    });
    expect(result.success).to.equal(false);
    const messages = result.error?.issues.map((issue) => issue.message).join("\n") ?? "";
    expect(messages).to.include("secrets never go in this file");
    expect(messages).to.include("{stage} is missing");
    expect(
      pullRequestConfigSchema.safeParse({ provider: "github", mode: "auto-merge", token: { fromEnv: "T" } })
        .error?.issues[0]?.message,
    ).to.include("GitHub's REST API cannot turn on auto-merge");
  });
});

describe("pull requests: rate limits", () => {
  const now = 1_700_000_000_000;

  it("reads GitHub's secondary and primary limits, and tells a plain 403 apart", () => {
    expect(
      rateLimitWait(403, { "retry-after": "3" }, "You have exceeded a secondary rate limit", now),
    ).to.equal(3000);
    expect(rateLimitWait(429, {}, "", now)).to.equal(60_000);
    expect(rateLimitWait(403, {}, "You have exceeded a secondary rate limit.", now)).to.equal(60_000);
    expect(
      rateLimitWait(
        403,
        { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now / 1000 + 42) },
        "",
        now,
      ),
    ).to.equal(42_000);
    expect(rateLimitWait(403, { "x-ratelimit-remaining": "4999" }, "Resource not accessible", now)).to.equal(
      undefined,
    );
    expect(rateLimitWait(404, { "retry-after": "3" }, "", now)).to.equal(undefined);
  });

  it("reads Retry-After as seconds or as a date", () => {
    expect(retryAfterMs("2", now)).to.equal(2000);
    expect(retryAfterMs(new Date(now + 5000).toUTCString(), now)).to.equal(5000);
    expect(retryAfterMs(undefined)).to.equal(undefined);
    expect(retryAfterMs("soon")).to.equal(undefined);
  });

  const policy = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2, rateLimitRetries: 2, maxRateLimitWaitMs: 50 };

  it("waits out a rate limit, bounded in count and length", async () => {
    let calls = 0;
    const result = await callWithPolicy(policy, () => {
      calls++;
      if (calls <= 2) return Promise.reject(new RateLimitedError("limited", 5));
      return Promise.resolve("done");
    });
    expect([result, calls]).to.deep.equal(["done", 3]);

    calls = 0;
    const tooMany = callWithPolicy(policy, () => {
      calls++;
      return Promise.reject(new RateLimitedError("limited", 1));
    });
    expect(await rejection(tooMany)).to.be.instanceOf(RateLimitedError);
    expect(calls).to.equal(3);

    calls = 0;
    const tooLong = callWithPolicy(policy, () => {
      calls++;
      return Promise.reject(new RateLimitedError("limited for an hour", 3_600_000));
    });
    expect((await rejection(tooLong)).message).to.equal("limited for an hour");
    expect(calls).to.equal(1);
  });

  it("retries 5xx with backoff up to the attempts, and never a terminal error", async () => {
    let calls = 0;
    const retried = await rejection(
      callWithPolicy(policy, () => {
        calls++;
        return Promise.reject(new RetryableError("502"));
      }),
    );
    expect(retried.message).to.equal("502");
    expect(calls).to.equal(3);
    calls = 0;
    const terminal = await rejection(
      callWithPolicy(policy, () => {
        calls++;
        return Promise.reject(new TerminalError("401"));
      }),
    );
    expect(terminal).to.be.instanceOf(TerminalError);
    expect(calls).to.equal(1);
  });

  it("stops waiting when the caller aborts", async () => {
    const controller = new AbortController();
    const started = Date.now();
    const call = callWithPolicy(
      { ...policy, maxRateLimitWaitMs: 60_000 },
      () => Promise.reject(new RateLimitedError("limited", 30_000)),
      controller.signal,
    );
    setTimeout(() => controller.abort(new Error("deployment cancelled")), 20);
    expect((await rejection(call)).message).to.equal("deployment cancelled");
    expect(Date.now() - started).to.be.lessThan(5_000);
  });
});
