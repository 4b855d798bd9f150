import { expect } from "chai";
import { natsBinding, NatsBindingError } from "../../src/control-plane/nats-binding.js";

const encoder = new TextEncoder();

describe("the NATS protocol binding", () => {
  const event = {
    type: "sh.keptn.event.deployment.started",
    id: "1",
    specversion: "1.0",
    data: { project: "p" },
  };

  it("structured mode: the subject is the type and the body the whole JSON event", () => {
    const message = natsBinding.structured(event);
    expect(message.subject).to.equal("sh.keptn.event.deployment.started");
    expect(message.headers).to.equal(undefined);
    expect(JSON.parse(new TextDecoder().decode(message.data))).to.deep.equal(event);
    expect(natsBinding.toEvent(message)).to.deep.equal(event);
  });

  it("binary mode: attributes as ce- headers and only data in the body", () => {
    const message = natsBinding.binary(event);
    expect(message.headers).to.deep.equal({
      "ce-type": "sh.keptn.event.deployment.started",
      "ce-id": "1",
      "ce-specversion": "1.0",
    });
    expect(JSON.parse(new TextDecoder().decode(message.data))).to.deep.equal({ project: "p" });
  });

  it("tells events from other messages and explains what is wrong", () => {
    expect(natsBinding.isEvent({ subject: "s", data: encoder.encode('  {"a":1}') })).to.equal(true);
    expect(natsBinding.isEvent({ subject: "s", data: encoder.encode("[1]") })).to.equal(false);
    expect(() => natsBinding.toEvent({ subject: "s", data: encoder.encode("{oops") })).to.throw(
      NatsBindingError,
      "the message on s is not JSON",
    );
    expect(() => natsBinding.toEvent({ subject: "s", data: encoder.encode("[1]") })).to.throw(
      NatsBindingError,
      "the message on s is not a JSON object",
    );
  });
});
