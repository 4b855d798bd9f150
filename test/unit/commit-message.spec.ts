import { expect } from "chai";
import { ConfigError, loadConfig } from "../../src/config/load-config.js";
import { deploymentCommitMessage } from "../../src/deployments/commit-message.js";
import type { TriggeredEvent } from "../../src/keptn/cloud-event.js";

const event: TriggeredEvent<unknown> = {
  id: "5f1b7c3e-0a2d-4e8f-9b6a-1c2d3e4f5a6b",
  type: "sh.keptn.event.deployment.triggered",
  task: "deployment",
  shkeptncontext: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
  scope: { project: "sockshop", stage: "dev", service: "carts", labels: { ticket: "OPS-42" } },
  data: {},
};
const changes = ["image.tag: 0.13.1 -> 0.13.2"];

describe("commit messages", () => {
  it("keeps the default message, with the Keptn trailers last", () => {
    expect(
      deploymentCommitMessage(event, "docker.io/keptnexamples/carts:0.13.2", [
        { file: "charts/carts/values-dev.yaml", changes },
      ]),
    ).to.equal(`Deploy carts docker.io/keptnexamples/carts:0.13.2 to sockshop/dev

Keptn asked for a deployment of service carts in stage dev of project sockshop.
Changed in charts/carts/values-dev.yaml:
  image.tag: 0.13.1 -> 0.13.2

Keptn-Context: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0
Keptn-Triggered-Id: 5f1b7c3e-0a2d-4e8f-9b6a-1c2d3e4f5a6b
`);
  });

  it("fills a configured template, labels included, and still adds the trailers", () => {
    const template = "chore({service}): {image} to {stage} [{labels.ticket}]{labels.missing}\n\n{changes}\n";
    expect(
      deploymentCommitMessage(event, "carts:0.13.2", [{ file: "values.yaml", changes }], template),
    ).to.equal(
      `chore(carts): carts:0.13.2 to dev [OPS-42]

  image.tag: 0.13.1 -> 0.13.2

Keptn-Context: 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0
Keptn-Triggered-Id: 5f1b7c3e-0a2d-4e8f-9b6a-1c2d3e4f5a6b
`,
    );
  });

  it("refuses a template with a placeholder it does not know, saying which ones it knows", () => {
    const text = `
git: { commitMessage: "deploy {servce} {image}" }
repositories: [{ name: gitops, url: "https://git.example.com/gitops.git" }]
argocd: { servers: [{ name: main, url: "https://argocd.example.com", token: { fromEnv: T } }] }
targets:
  - repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: main }
`;
    try {
      loadConfig({ text, source: "config.yaml", env: { T: "argo-token-123" } });
      expect.fail("the configuration loaded");
    } catch (error) {
      expect(error).to.be.instanceOf(ConfigError);
      expect((error as ConfigError).problems.join("\n"))
        .to.include("git.commitMessage: unknown placeholder {servce}")
        .and.include("{labels.<name>}");
    }
  });
});
