import { expect } from "chai";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TerminalError } from "../../src/shared/errors.js";
import { FluxClient } from "../../src/sync/flux/flux-client.js";
import { FluxSimulator } from "../simulators/flux/flux-simulator.js";
import { createGitopsFixture, type GitopsFixture } from "../support/gitops-fixture.js";

// What the Kubernetes API's refusals become, over real HTTP with client-node: each message says what to fix.
describe("Flux client: the API server's refusals (Flux simulator)", function () {
  this.timeout(30_000);
  let dir: string;
  let fixture: GitopsFixture;
  let simulator: FluxSimulator;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "flux-client-"));
    fixture = await createGitopsFixture({ "clusters/dev/app.yaml": "kind: ConfigMap\n" });
    simulator = new FluxSimulator({
      token: "flux-client-token-1a2b3c",
      gitRepositories: [{ name: "gitops", gitDir: fixture.bareDir, interval: "1h" }],
      kustomizations: [{ name: "app-dev", source: "gitops", path: "./clusters/dev", interval: "1h" }],
    });
    await simulator.start();
  });
  after(async () => {
    await simulator?.stop();
    await fixture?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  /** A client whose kubeconfig has `token` as its user's token, or no credentials at all. */
  const client = async (token: string | undefined) => {
    const config = JSON.parse(simulator.kubeconfig()) as { users: Array<{ user: Record<string, unknown> }> };
    config.users[0]!.user = token === undefined ? {} : { token };
    const file = join(dir, `kubeconfig-${token ?? "anonymous"}`);
    await writeFile(file, JSON.stringify(config));
    return new FluxClient({ cluster: "edge", kubeconfig: file });
  };

  const refusal = async (call: Promise<unknown>): Promise<string> => {
    const error = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(TerminalError);
    return (error as Error).message;
  };

  it("403 (no credentials): says which verbs to grant", async () => {
    const message = await refusal((await client(undefined)).read("Kustomization", "flux-system", "app-dev"));
    expect(message)
      .to.include("forbids the service to read Kustomization flux-system/app-dev (403")
      .and.include("grant it get, list, watch and patch on Flux objects");
  });

  it("401 (a token the server does not know): says which cluster's credentials to check", async () => {
    const message = await refusal(
      (await client("not-the-token")).read("Kustomization", "flux-system", "app-dev"),
    );
    expect(message).to.include("rejected the credentials (401)").and.include("check flux.clusters.edge");
    expect(message).to.not.include("not-the-token");
  });

  it("404: says which target keys to check", async () => {
    const message = await refusal(
      (await client("flux-client-token-1a2b3c")).read("Kustomization", "flux-system", "nope"),
    );
    expect(message).to.include("has no Kustomization flux-system/nope (404); check the target's deploy.name");
  });
});
