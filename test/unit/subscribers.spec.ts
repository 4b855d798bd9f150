import { expect } from "chai";
import { setTimeout as sleep } from "node:timers/promises";
import { Subscribers } from "../../src/sync/subscribers.js";

describe("Subscribers (the listeners of a shared watch or list schedule)", () => {
  const make = () => {
    const calls = { first: 0, idle: 0 };
    const subscribers = new Subscribers<string>({
      onFirst: () => calls.first++,
      onIdle: () => calls.idle++,
      idleMs: 20,
    });
    return { calls, subscribers };
  };

  it("delivers a version to the listeners of that name only", () => {
    const { subscribers } = make();
    const got: string[] = [];
    subscribers.subscribe("carts-dev", (v) => got.push(`carts ${v}`));
    subscribers.subscribe("orders-dev", (v) => got.push(`orders ${v}`));
    subscribers.deliver("carts-dev", "v2");
    expect(got).to.deep.equal(["carts v2"]);
  });

  it("stops the source only after nobody has listened for idleMs, and not when someone comes back", async () => {
    const { calls, subscribers } = make();
    const leave = subscribers.subscribe("carts-dev", () => {});
    leave();
    const back = subscribers.subscribe("carts-dev", () => {});
    await sleep(40);
    expect(calls.idle, "someone came back before idleMs").to.equal(0);
    back();
    await sleep(40);
    expect(calls.idle).to.equal(1);
    expect(calls.first).to.equal(2);
  });
});
