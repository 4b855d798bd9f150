import { expect } from "chai";
import { News } from "../../src/sync/news.js";

describe("News (what reaches a waiting deployment between two reads)", () => {
  it("ends the current pause on a push or a poke", () => {
    const news = new News<string>();
    const first = news.nextPause(60_000);
    expect(first.ms).to.equal(60_000);
    news.push("v2");
    expect(first.wake.fired).to.equal(true);
    expect(news.take()).to.equal("v2");
    const second = news.nextPause(60_000);
    news.poke();
    expect(second.wake.fired).to.equal(true);
  });

  it("does not lose a poke that came while the watcher was reading: the next pause is zero", () => {
    const news = new News<string>();
    news.nextPause(60_000);
    // The pause ended, the watcher reads the API, and a notification arrives meanwhile.
    news.poke();
    expect(news.nextPause(60_000).ms).to.equal(0);
    // Once handled, the follow-up interval applies, then the base interval again.
    expect(news.nextPause(60_000).ms).to.equal(1_000);
  });

  it("does not lose a version that came during a read", () => {
    const news = new News<string>();
    news.nextPause(60_000);
    news.push("v3");
    expect(news.nextPause(60_000).ms).to.equal(0);
    expect(news.take()).to.equal("v3");
    expect(news.nextPause(60_000).ms).to.equal(60_000);
  });
});
