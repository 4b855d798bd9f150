import { expect } from "chai";
import { Writable } from "node:stream";
import { z } from "zod";
import type { ControlPlane, DeliveryHandler, OutgoingEvent } from "../../src/control-plane/control-plane.js";
import { TaskConnector, type TaskHandler } from "../../src/control-plane/task-connector.js";
import { DeploymentFailedError, TerminalError } from "../../src/shared/errors.js";
import { createLogger } from "../../src/shared/logger.js";
import { SecretRegistry } from "../../src/shared/secrets.js";
import { waitFor } from "../support/wait.js";

/** A ControlPlane fake: deliveries are pushed by the test, publications are recorded. */
class InMemoryControlPlane implements ControlPlane {
  readonly published: OutgoingEvent[] = [];
  private handler: DeliveryHandler | undefined;
  private waiters: Array<() => void> = [];
  async start(): Promise<void> {}
  async subscribe(_types: string[], handler: DeliveryHandler): Promise<void> {
    this.handler = handler;
  }
  async publish(event: OutgoingEvent): Promise<void> {
    this.published.push(event);
    this.waiters.forEach((w) => w());
  }
  isConnected(): boolean {
    return true;
  }
  async close(): Promise<void> {}
  /** Set by the test: what a delivery waits for after it was accepted (by default, nothing). */
  settle: () => Promise<void> = async () => undefined;
  /** Delivers, and resolves once the task was accepted and `settle` resolved. */
  async deliver(body: unknown): Promise<void> {
    await this.handler!({ eventType: "sh.keptn.event.test.triggered", body });
    await this.settle();
  }
}

function triggered(id: string, data: Record<string, unknown> = {}) {
  return {
    specversion: "1.0",
    id,
    type: "sh.keptn.event.test.triggered",
    source: "shipyard-controller",
    shkeptncontext: "ctx-1",
    data: { project: "p", stage: "s", service: "svc", ...data },
  };
}

function handler(
  execute: TaskHandler<{ n?: number }>["execute"],
  timeoutMs = 1_000,
): TaskHandler<{ n?: number }> {
  return {
    task: "test",
    dataSchema: z.looseObject({ n: z.number().optional() }),
    timeoutMs: () => timeoutMs,
    baseTaskData: () => ({ base: true }),
    execute,
  };
}

function connectorWith(task: TaskHandler<{ n?: number }>, secrets = new SecretRegistry()) {
  const controlPlane = new InMemoryControlPlane();
  const sink = new Writable({ write: (_c, _e, done) => done() });
  const connector = new TaskConnector({
    controlPlane,
    source: "unit",
    logger: createLogger({ level: "silent", secrets, destination: sink }),
    secrets,
    handlers: [task],
    deadlineGraceMs: 50,
  });
  // The connector accepts a delivery at once and runs the task after: these tests wait for the task too.
  controlPlane.settle = () => connector.idle();
  return { controlPlane, connector };
}

const dataOf = (event: OutgoingEvent | undefined) => event?.["data"] as Record<string, unknown>;

describe("TaskConnector (the go-utils SDK port)", () => {
  it("sends started before finished and merges the handler's task data", async () => {
    const { controlPlane, connector } = connectorWith(
      handler(async () => ({ status: "succeeded", result: "pass", message: "ok", taskData: { extra: 1 } })),
    );
    await connector.start();
    await controlPlane.deliver(triggered("a"));
    expect(controlPlane.published.map((e) => e.type)).to.deep.equal([
      "sh.keptn.event.test.started",
      "sh.keptn.event.test.finished",
    ]);
    expect(dataOf(controlPlane.published[1])).to.deep.include({
      status: "succeeded",
      result: "pass",
      message: "ok",
      test: { base: true, extra: 1 },
    });
  });

  it("maps each error class to status and result", async () => {
    const cases: Array<[Error, string, string]> = [
      [new TerminalError("bad input"), "errored", "fail"],
      [new DeploymentFailedError("app degraded"), "succeeded", "fail"],
      [new Error("boom"), "errored", "fail"],
    ];
    for (const [error, status, result] of cases) {
      const { controlPlane, connector } = connectorWith(handler(async () => Promise.reject(error)));
      await connector.start();
      await controlPlane.deliver(triggered(error.message));
      expect(dataOf(controlPlane.published[1])).to.include({ status, result });
      expect(String(dataOf(controlPlane.published[1])["message"])).to.include(error.message);
    }
  });

  it("answers for a handler that never returns, once the deadline and grace have passed", async () => {
    const { controlPlane, connector } = connectorWith(handler(() => new Promise(() => undefined), 100));
    await connector.start();
    await controlPlane.deliver(triggered("hung"));
    expect(dataOf(controlPlane.published[1])).to.include({
      status: "errored",
      result: "fail",
      message: "the test did not finish within 100ms; the service stopped waiting",
    });
  });

  it("sends the task data reported so far when the deadline ends a hung task", async () => {
    const { controlPlane, connector } = connectorWith(
      handler(({ progress }) => {
        progress({ gitCommit: "abc123" });
        return new Promise(() => undefined);
      }, 100),
    );
    await connector.start();
    await controlPlane.deliver(triggered("hung-after-push"));
    expect(dataOf(controlPlane.published[1])).to.deep.include({ test: { base: true, gitCommit: "abc123" } });
  });

  it("answers an event whose optional attributes have the wrong type", async () => {
    const { controlPlane, connector } = connectorWith(
      handler(async () => ({ status: "succeeded", result: "pass", message: "ok" })),
    );
    await connector.start();
    await controlPlane.deliver({ ...triggered("odd"), specversion: null, time: 123, source: { x: 1 } });
    expect(dataOf(controlPlane.published[1])).to.include({ status: "succeeded", result: "pass" });
  });

  it("redacts secrets from the message", async () => {
    const secrets = new SecretRegistry();
    secrets.add("s3cr3t-token-value");
    const { controlPlane, connector } = connectorWith(
      handler(async () =>
        Promise.reject(new TerminalError("git said: https://u:s3cr3t-token-value@host/repo failed")),
      ),
      secrets,
    );
    await connector.start();
    await controlPlane.deliver(triggered("leak"));
    expect(dataOf(controlPlane.published[1])["message"]).to.equal(
      "git said: https://u:[REDACTED]@host/repo failed",
    );
  });

  it("answers errored when project, stage or service is missing, without running the handler", async () => {
    let ran = false;
    const { controlPlane, connector } = connectorWith(
      handler(async () => {
        ran = true;
        return { status: "succeeded", result: "pass", message: "" };
      }),
    );
    await connector.start();
    await controlPlane.deliver({ ...triggered("noscope"), data: { project: "p" } });
    expect(ran).to.equal(false);
    expect(dataOf(controlPlane.published[1])).to.include({
      status: "errored",
      message:
        "the sh.keptn.event.test.triggered event has no data.stage, data.service; Keptn sends them for every task",
    });
  });

  it("aborts running tasks on stop and still answers them", async () => {
    let entered: () => void = () => undefined;
    const running = new Promise<void>((resolve) => (entered = resolve));
    const { controlPlane, connector } = connectorWith(
      handler(
        ({ signal }) =>
          new Promise((_resolve, reject) => {
            signal.addEventListener("abort", () => reject(signal.reason));
            entered();
          }),
      ),
    );
    await connector.start();
    const delivered = controlPlane.deliver(triggered("stopped"));
    await running;
    await connector.stop();
    await delivered;
    expect(dataOf(controlPlane.published[1])).to.include({
      status: "errored",
      message: "the service shut down during the test; trigger it again",
    });
  });

  it("lets at most 64 tasks of a burst be between receipt and .started at once, and answers all of them", async () => {
    const { controlPlane, connector } = connectorWith(
      handler(async () => ({ status: "succeeded", result: "pass", message: "ok" })),
    );
    // NATS is slow to confirm the .started events: each waits until the test lets the waiting ones through.
    let pending: Array<() => void> = [];
    let mostAtOnce = 0;
    const publish = controlPlane.publish.bind(controlPlane);
    controlPlane.publish = async (event) => {
      if (event.type.endsWith(".started")) {
        await new Promise<void>((resolve) => {
          pending.push(resolve);
          mostAtOnce = Math.max(mostAtOnce, pending.length);
        });
      }
      await publish(event);
    };
    await connector.start();
    const deliveries = Array.from({ length: 200 }, (_, i) => controlPlane.deliver(triggered(`burst-${i}`)));
    await waitFor(() => pending.length === 64, { timeoutMs: 5_000, what: "64 .started events on their way" });
    const finished = () => controlPlane.published.filter((e) => e.type.endsWith(".finished")).length;
    while (finished() < 200) {
      const through = pending;
      pending = [];
      for (const resolve of through) resolve();
      await waitFor(() => pending.length > 0 || finished() === 200, {
        timeoutMs: 5_000,
        what: "the next tasks to start",
      });
    }
    await Promise.all(deliveries);
    expect(mostAtOnce).to.equal(64);
    expect(controlPlane.published.filter((e) => e.type.endsWith(".started"))).to.have.length(200);
  });

  it("answers events that arrive while stopping without running the handler", async () => {
    let ran = false;
    const { controlPlane, connector } = connectorWith(
      handler(async () => {
        ran = true;
        return { status: "succeeded", result: "pass", message: "" };
      }),
    );
    await connector.start();
    await connector.stop();
    await controlPlane.deliver(triggered("late"));
    expect(ran).to.equal(false);
    expect(dataOf(controlPlane.published[1])).to.include({ status: "errored", result: "fail" });
  });
});
