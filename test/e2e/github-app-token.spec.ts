import { expect } from "chai";
import { generateKeyPairSync } from "node:crypto";
import { inspect } from "node:util";
import { GitHubAppTokens } from "../../src/gitops-repo/github-app-token.js";
import type { GitHubAppTokensOptions } from "../../src/gitops-repo/github-app-token.js";
import { createPullRequestHost } from "../../src/gitops-repo/pull-requests/pull-request-hosts.js";
import { RetryableError, TerminalError } from "../../src/shared/errors.js";
import { SecretRegistry } from "../../src/shared/secrets.js";
import { GitHubSimulator } from "../simulators/github/github-simulator.js";
import { commitToBare, createGitopsFixture } from "../support/gitops-fixture.js";
import type { GitopsFixture } from "../support/gitops-fixture.js";
import { rejection } from "../support/rejection.js";

// GitHubAppTokens against the GitHub simulator, which verifies the app's JWT with the app's public key and the
// clock rules GitHub applies, issues installation tokens with a lifetime, and accepts them on the pulls API.

const APP_ID = 31337;
const INSTALLATION = 4711;
const OWNER = "sockshop";
const REPO = "gitops";
const appKeys = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});
const wrongKeys = generateKeyPairSync("rsa", {
  modulusLength: 2048,
  privateKeyEncoding: { type: "pkcs1", format: "pem" },
  publicKeyEncoding: { type: "spki", format: "pem" },
});
const MINUTE = 60_000;

describe("GitHub App installation tokens", function () {
  this.timeout(20000);

  let fixture: GitopsFixture;
  let sim: GitHubSimulator;
  /** one clock for the service and the simulator, moved by the tests */
  let clock: number;
  /** the Authorization headers the client sent, to prove no JWT ends up in a message */
  let sentAuthorizations: string[];

  async function startSimulator(lifetimeSeconds = 3600) {
    sim = new GitHubSimulator({
      token: "ghp_staticTokenNotUsedHere0123456789",
      repositories: [{ owner: OWNER, repo: REPO, gitDir: fixture.bareDir }],
      apps: [{ id: APP_ID, publicKey: appKeys.publicKey, installationIds: [INSTALLATION] }],
      installationTokenLifetimeSeconds: lifetimeSeconds,
      now: () => clock,
    });
    await sim.start();
  }

  function tokens(options: Partial<GitHubAppTokensOptions> = {}): GitHubAppTokens {
    return new GitHubAppTokens({
      appId: APP_ID,
      installationId: INSTALLATION,
      privateKey: appKeys.privateKey,
      apiUrl: sim.url,
      configuredAt: 'repository "gitops"',
      now: () => clock,
      fetch: (input, init) => {
        const headers = new Headers(init?.headers);
        sentAuthorizations.push(headers.get("authorization") ?? "");
        return fetch(input, init);
      },
      ...options,
    });
  }

  const exchanges = () => sim.requests.filter((request) => request.path.endsWith("/access_tokens")).length;

  /** No private key line, no JWT and no issued token anywhere in the error, its cause chain included. */
  function expectNoSecretIn(error: Error) {
    const text = inspect(error, { depth: null }) + error.message;
    const secrets = [
      ...appKeys.privateKey.split("\n").filter((line) => line.length > 20 && !line.startsWith("-----")),
      ...wrongKeys.privateKey.split("\n").filter((line) => line.length > 20 && !line.startsWith("-----")),
      ...sentAuthorizations.map((header) => header.replace(/^Bearer /, "")),
      ...sim.issuedTokens.map((issued) => issued.token),
    ];
    expect(secrets.length).to.be.greaterThan(0);
    for (const secret of secrets) expect(text).not.to.include(secret);
  }

  beforeEach(async () => {
    fixture = await createGitopsFixture();
    clock = Date.UTC(2026, 10, 27, 9, 0, 0);
    sentAuthorizations = [];
  });

  afterEach(async () => {
    await sim.stop();
    expect(sim.errors, "internal simulator errors").to.deep.equal([]);
    await fixture.remove();
  });

  it("gets a token that works on the pulls API, and reuses it while it has time left", async () => {
    await startSimulator();
    const app = tokens();
    const token = await app.tokenFor();
    expect(token).to.match(/^ghs_/);
    expect(sentAuthorizations[0]).to.match(/^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);

    const branch = "keptn/sockshop/production/carts";
    await commitToBare(fixture.bareDir, { "charts/carts/values.yaml": "image:\n  tag: 0.14.0\n" }, "carts", {
      branch,
    });
    const host = createPullRequestHost(
      { name: "gitops", url: `https://github.com/${OWNER}/${REPO}.git` },
      { provider: "github", apiUrl: sim.url, tokenHeader: "private-token" },
      await app.tokenFor(),
    );
    const opened = await host.ensurePullRequest({ branch, base: "main", title: "Deploy carts", body: "b" });
    expect(opened).to.include({ number: 1, created: true });

    clock += 30 * MINUTE;
    expect(await app.tokenFor()).to.equal(token);
    expect(exchanges(), "one exchange for all calls").to.equal(1);

    app.invalidate(); // as after the git host refused the token
    expect(await app.tokenFor()).not.to.equal(token);
    expect(exchanges()).to.equal(2);
  });

  it("shares one exchange between concurrent callers", async () => {
    await startSimulator();
    const app = tokens();
    const all = await Promise.all(Array.from({ length: 8 }, () => app.tokenFor()));
    expect(new Set(all).size).to.equal(1);
    expect(exchanges()).to.equal(1);
  });

  it("renews the token a margin before it expires, while the old one still works", async () => {
    await startSimulator(20 * 60); // 20 minutes
    const app = tokens({ renewMarginMs: 5 * MINUTE });
    const first = await app.tokenFor();

    clock += 14 * MINUTE;
    expect(await app.tokenFor(), "15 minutes before expiry: still cached").to.equal(first);
    expect(exchanges()).to.equal(1);

    clock += MINUTE + 1000;
    const second = await app.tokenFor();
    expect(second, "inside the margin: renewed").not.to.equal(first);
    expect(exchanges()).to.equal(2);
    const list = (token: string) =>
      fetch(`${sim.url}/repos/${OWNER}/${REPO}/pulls`, { headers: { authorization: `Bearer ${token}` } });
    expect((await list(first)).status, "the old token had time left").to.equal(200);

    clock += 5 * MINUTE;
    expect((await list(first)).status, "the old token has expired").to.equal(401);
    expect((await list(second)).status).to.equal(200);
    expect(await app.tokenFor()).to.equal(second);
  });

  it("renews at half the lifetime when the lifetime is shorter than twice the margin", async () => {
    await startSimulator(4 * 60); // 4 minutes, margin 5 minutes
    const app = tokens();
    const first = await app.tokenFor();
    clock += MINUTE;
    expect(await app.tokenFor()).to.equal(first);
    clock += MINUTE + 1000;
    expect(await app.tokenFor()).not.to.equal(first);
    expect(exchanges()).to.equal(2);
  });

  it("refuses a wrong private key with a TerminalError that says what to check and shows no secret", async () => {
    await startSimulator();
    const secrets = new SecretRegistry();
    const error = await rejection(tokens({ privateKey: wrongKeys.privateKey, secrets }).tokenFor());
    expect(error).to.be.instanceOf(TerminalError);
    expect(error.message).to.include("A JSON web token could not be decoded");
    expect(error.message).to.include(
      `check that the private key configured for repository "gitops" belongs to GitHub App ${APP_ID}`,
    );
    expect(error.message).to.include("clock");
    expectNoSecretIn(error);
    const keyLine = wrongKeys.privateKey.split("\n")[3] ?? "";
    expect(secrets.redact(`oops ${keyLine}`), "the key is registered for redaction").to.equal(
      "oops [REDACTED]",
    );
  });

  it("refuses an unknown installation with a TerminalError naming the installation", async () => {
    await startSimulator();
    const error = await rejection(tokens({ installationId: 999 }).tokenFor());
    expect(error).to.be.instanceOf(TerminalError);
    expect(error.message).to.match(/no installation 999 of GitHub App 31337 \(404: Not Found\)/);
    expect(error.message).to.include(
      'check the installation id and the app id configured for repository "gitops"',
    );
    expectNoSecretIn(error);
  });

  it("says to check the clock when the service's clock runs ahead of GitHub's", async () => {
    await startSimulator();
    const error = await rejection(tokens({ now: () => clock + 2 * MINUTE }).tokenFor());
    expect(error).to.be.instanceOf(TerminalError);
    // more than the 60 s of slack on either side: `iat` is in GitHub's future, `exp` more than 10 minutes ahead
    expect(error.message).to.match(
      /GitHub rejected the app's JWT \(401: '(Issued at|Expiration time)' claim/,
    );
    expect(error.message).to.include("this machine's clock");
    expect(
      await tokens({ now: () => clock - 8 * MINUTE }).tokenFor(),
      "8 minutes behind still works",
    ).to.match(/^ghs_/);
  });

  it("refuses a private key that is not PEM before calling GitHub", async () => {
    await startSimulator();
    const error = await rejection(tokens({ privateKey: "MIIEowIBAAKCAQEAnotAKeyAtAll" }).tokenFor());
    expect(error).to.be.instanceOf(TerminalError);
    expect(error.message).to.match(
      /the private key of GitHub App 31337 configured for repository "gitops" is not a PEM/,
    );
    expect(error.message).not.to.include("MIIEowIBAAKCAQEAnotAKeyAtAll");
    expect(exchanges()).to.equal(0);
  });

  it("accepts a key whose newlines were written as \\n (as in an environment variable)", async () => {
    await startSimulator();
    const app = tokens({ privateKey: appKeys.privateKey.trim().split("\n").join("\\n") });
    expect(await app.tokenFor()).to.match(/^ghs_/);
  });

  it("answers 5xx and network errors with a RetryableError and does not cache the failure", async () => {
    await startSimulator();
    const app = tokens();
    sim.injectFailures(1, 502);
    const failed = await rejection(app.tokenFor());
    expect(failed).to.be.instanceOf(RetryableError);
    expect(failed.message).to.include("GitHub answered 502");
    expectNoSecretIn(failed);
    expect(await app.tokenFor()).to.match(/^ghs_/);
    expect(exchanges()).to.equal(2);

    const closed = new GitHubSimulator({ token: "unused-token", repositories: [] });
    const url = await closed.start();
    await closed.stop();
    const network = await rejection(tokens({ apiUrl: url }).tokenFor());
    expect(network).to.be.instanceOf(RetryableError);
    expect(network.message).to.include("GitHub did not answer");
  });

  it("ends a caller's wait when its signal aborts, and the exchange still completes for the others", async () => {
    await startSimulator();
    const app = tokens();
    const controller = new AbortController();
    const waiting = app.tokenFor(controller.signal);
    const other = app.tokenFor();
    controller.abort(new Error("deployment cancelled"));
    expect((await rejection(waiting)).message).to.equal("deployment cancelled");
    expect(await other).to.match(/^ghs_/);
    expect(exchanges()).to.equal(1);
  });
});
