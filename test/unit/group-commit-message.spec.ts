import { expect } from "chai";
import { deploymentCommitMessage, groupCommitMessage } from "../../src/deployments/commit-message.js";
import type { TriggeredEvent } from "../../src/keptn/cloud-event.js";

const event = (service: string, id: string): TriggeredEvent<unknown> => ({
  id,
  type: "sh.keptn.event.deployment.triggered",
  task: "deployment",
  shkeptncontext: `context-of-${id}`,
  scope: { project: "sockshop", stage: "dev", service, labels: {} },
  data: {},
});

describe("grouped commit messages", () => {
  it("counts the deployments, lists each message, and ends with one trailer pair per deployment", () => {
    const messages = [
      deploymentCommitMessage(event("carts", "t1"), "carts:1.0.1", [
        { file: "charts/carts/values-dev.yaml", changes: ["image.tag: 1.0.0 -> 1.0.1"] },
      ]),
      deploymentCommitMessage(event("orders", "t2"), "orders:2.0.0", [
        { file: "charts/orders/values-dev.yaml", changes: ["image.tag: 1.0.0 -> 2.0.0"] },
      ]),
    ];
    expect(groupCommitMessage(messages)).to.equal(`Deploy 2 changes from Keptn

* Deploy carts carts:1.0.1 to sockshop/dev

  Keptn asked for a deployment of service carts in stage dev of project sockshop.
  Changed in charts/carts/values-dev.yaml:
    image.tag: 1.0.0 -> 1.0.1

* Deploy orders orders:2.0.0 to sockshop/dev

  Keptn asked for a deployment of service orders in stage dev of project sockshop.
  Changed in charts/orders/values-dev.yaml:
    image.tag: 1.0.0 -> 2.0.0

Keptn-Context: context-of-t1
Keptn-Triggered-Id: t1
Keptn-Context: context-of-t2
Keptn-Triggered-Id: t2
`);
  });

  it("keeps a one-line template's message as the item", () => {
    const template = "{service}: {image}";
    const messages = ["a", "b"].map((service, i) =>
      deploymentCommitMessage(
        event(service, `id${i}`),
        `${service}:1`,
        [{ file: "f.yaml", changes: [] }],
        template,
      ),
    );
    expect(groupCommitMessage(messages)).to.equal(
      "Deploy 2 changes from Keptn\n\n* a: a:1\n\n* b: b:1\n\nKeptn-Context: context-of-id0\nKeptn-Triggered-Id: id0\nKeptn-Context: context-of-id1\nKeptn-Triggered-Id: id1\n",
    );
  });
});
