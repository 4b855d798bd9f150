import { expect } from "chai";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "nats";
import { FileTaskStore, recordFileName } from "../../src/task-store/file-task-store.js";
import { JetStreamTaskStore } from "../../src/task-store/jetstream-task-store.js";
import {
  RevisionConflictError,
  TaskStoreUnavailableError,
  type StoredTask,
  type TaskRecord,
  type TaskStore,
} from "../../src/task-store/task-store.js";
import { NatsServerProcess } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";
import { rejection } from "../support/rejection.js";

// The same scenarios against both adapters of TaskStore: a directory of files, and a JetStream key-value bucket
// on a real nats-server. "Restart" is real: a new FileTaskStore on the same directory; for JetStream, nats-server
// is killed with SIGKILL and started again on the same store directory, and the service reconnects.

const BUCKET = "keptn-gitops-tasks";
const RECEIVED_AT = 1_700_000_000_000;

/** What a scenario may do with a store. */
interface World {
  store: TaskStore;
  /** Crashes and starts again whatever holds the records, and answers a new store opened on them. */
  restart(): Promise<TaskStore>;
}

interface Backend {
  name: "file" | "jetstream";
  start(): Promise<{ world: World; stop(): Promise<void> }>;
}

async function openStore<T extends TaskStore>(store: T): Promise<T> {
  await store.open();
  return store;
}

function natsConnect(server: NatsServerProcess): Promise<NatsConnection> {
  return connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
}

const BACKENDS: Backend[] = [
  {
    name: "file",
    async start() {
      const root = await mkdtemp(join(tmpdir(), "task-store-"));
      const dir = join(root, "tasks");
      const world: World = {
        store: await openStore(new FileTaskStore({ dir })),
        // a process that ends keeps nothing in memory: the new store knows only what is on disk
        restart: () => openStore(new FileTaskStore({ dir })),
      };
      return { world, stop: () => rm(root, { recursive: true, force: true }) };
    },
  },
  {
    name: "jetstream",
    async start() {
      const server = await NatsServerProcess.start({ jetstream: true });
      const connections: NatsConnection[] = [await natsConnect(server)];
      const open = async (connection: NatsConnection) =>
        openStore(new JetStreamTaskStore({ connection, bucket: BUCKET, replicas: 1 }));
      const world: World = {
        store: await open(connections[0]!),
        async restart() {
          await server.kill("SIGKILL");
          await Promise.all(connections.map((connection) => connection.close()));
          await server.restart();
          const connection = await natsConnect(server);
          connections.push(connection);
          return open(connection);
        },
      };
      return {
        world,
        async stop() {
          await Promise.all(connections.map((connection) => connection.close()));
          await server.stop();
        },
      };
    },
  },
];

function record(id: string, overrides: Partial<TaskRecord> = {}): TaskRecord {
  return {
    id,
    task: "deployment",
    event: {
      specversion: "1.0",
      id,
      type: "sh.keptn.event.deployment.triggered",
      shkeptncontext: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
      data: { project: "sockshop", stage: "production", service: "carts" },
    },
    phase: "accepted",
    receivedAt: RECEIVED_AT,
    deadline: RECEIVED_AT + 600_000,
    taskData: {},
    ...overrides,
  };
}

function done(id: string, doneAt: number): TaskRecord {
  return record(id, {
    phase: "done",
    finish: { status: "succeeded", result: "pass", message: "synced" },
    doneAt,
  });
}

async function created(store: TaskStore, task: TaskRecord): Promise<number> {
  const outcome = await store.create(task);
  if (!outcome.created) throw new Error(`task ${task.id} exists already`);
  return outcome.revision;
}

function ids(stored: StoredTask[]): string[] {
  return stored.map((each) => each.record.id).sort();
}

const SCENARIOS: { name: string; run(world: World): Promise<void> }[] = [
  {
    name: "creates a record and reads it back; an unknown id reads as nothing",
    async run({ store }) {
      const task = record("5f1b7c3e-0a2d-4e8f-9b6a-1c2d3e4f5a6b", { taskData: { gitCommit: "abc123" } });
      const outcome = await store.create(task);
      expect(outcome.created).to.equal(true);
      const revision = outcome.created ? outcome.revision : 0;
      expect(revision).to.be.a("number").above(0);
      expect(await store.get(task.id)).to.deep.equal({ record: task, revision });
      expect(await store.get("never-created")).to.equal(undefined);
    },
  },
  {
    name: "answers the existing record to a second create of the same id, and keeps it",
    async run({ store }) {
      const first = record("redelivered");
      const revision = await created(store, first);
      const second = record("redelivered", { receivedAt: RECEIVED_AT + 5_000, taskData: { other: true } });
      expect(await store.create(second)).to.deep.equal({
        created: false,
        existing: { record: first, revision },
      });
      expect(await store.get("redelivered")).to.deep.equal({ record: first, revision });
    },
  },
  {
    name: "lets exactly one of 20 concurrent creates of one id win; the others get the winner's record",
    async run({ store }) {
      const attempts = Array.from({ length: 20 }, (_, i) => record("raced", { taskData: { attempt: i } }));
      const outcomes = await Promise.all(attempts.map((attempt) => store.create(attempt)));
      const winners = outcomes.filter((outcome) => outcome.created);
      expect(winners).to.have.length(1);
      const stored = await store.get("raced");
      expect(stored).to.not.equal(undefined);
      expect(winners[0]).to.deep.equal({ created: true, revision: stored!.revision });
      for (const outcome of outcomes) {
        if (!outcome.created) expect(outcome.existing).to.deep.equal(stored);
      }
    },
  },
  {
    name: "updates at the current revision and answers a new one; a stale or unknown revision is a conflict",
    async run({ store }) {
      const first = await created(store, record("updated"));
      const started = record("updated", {
        phase: "started",
        owner: "replica-a",
      });
      const second = await store.update(started, first);
      expect(second).to.be.above(first);
      expect(await store.get("updated")).to.deep.equal({ record: started, revision: second });

      const stale = await rejection(store.update(record("updated", { phase: "finishing" }), first));
      expect(stale).to.be.instanceOf(RevisionConflictError);
      expect(stale).to.deep.include({ id: "updated", expected: first });
      expect(stale.message).to.equal(`the record of task updated is no longer at revision ${first}`);
      expect(await store.get("updated")).to.deep.equal({ record: started, revision: second });

      expect(await rejection(store.update(record("updated"), second + 1000))).to.be.instanceOf(
        RevisionConflictError,
      );
      expect(await rejection(store.update(record("updated"), 0))).to.be.instanceOf(RevisionConflictError);
      // a record that is not there cannot be updated
      expect(await rejection(store.update(record("missing"), 1))).to.be.instanceOf(RevisionConflictError);
      expect(await store.get("missing")).to.equal(undefined);
    },
  },
  {
    name: "lets exactly one of 10 concurrent updates from the same revision win",
    async run({ store }) {
      const revision = await created(store, record("contended"));
      const updates = Array.from({ length: 10 }, (_, i) =>
        store.update(record("contended", { phase: "started", owner: `replica-${i}` }), revision).then(
          (next) => ({ owner: `replica-${i}`, next }),
          (error: unknown) => error,
        ),
      );
      const results = await Promise.all(updates);
      const wins = results.filter(
        (result): result is { owner: string; next: number } => !(result instanceof Error),
      );
      expect(wins).to.have.length(1);
      expect(results.filter((result) => result instanceof RevisionConflictError)).to.have.length(9);
      const stored = await store.get("contended");
      expect(stored?.revision).to.equal(wins[0]!.next);
      expect(stored?.record.owner).to.equal(wins[0]!.owner);
    },
  },
  {
    name: "lists the records that are not done, and only those",
    async run({ store }) {
      expect(await store.unfinished()).to.deep.equal([]);
      await created(store, record("accepted"));
      await created(store, record("started", { phase: "started" }));
      await created(store, record("finishing", { phase: "finishing" }));
      await created(store, done("done", RECEIVED_AT + 1_000));
      const finishing = await created(store, record("finishes-now", { phase: "finishing" }));
      await store.update(done("finishes-now", RECEIVED_AT + 2_000), finishing);

      const unfinished = await store.unfinished();
      expect(ids(unfinished)).to.deep.equal(["accepted", "finishing", "started"]);
      for (const stored of unfinished) expect(await store.get(stored.record.id)).to.deep.equal(stored);
    },
  },
  {
    name: "sweeps done records finished before the cut-off, and nothing else; the id is free again",
    async run({ store }) {
      await created(store, done("old", RECEIVED_AT + 1_000));
      await created(store, done("older", RECEIVED_AT + 500));
      await created(store, done("recent", RECEIVED_AT + 5_000));
      await created(store, done("at-cut-off", RECEIVED_AT + 3_000));
      await created(store, record("running", { phase: "started", receivedAt: 0, deadline: 1 }));

      expect(await store.sweep(RECEIVED_AT + 3_000)).to.equal(2);
      expect(await store.get("old")).to.equal(undefined);
      expect(await store.get("older")).to.equal(undefined);
      for (const id of ["recent", "at-cut-off", "running"])
        expect(await store.get(id), id).to.not.equal(undefined);
      expect(ids(await store.unfinished())).to.deep.equal(["running"]);
      expect(await store.sweep(RECEIVED_AT + 3_000)).to.equal(0);

      const again = await store.create(record("old"));
      expect(again.created).to.equal(true);
      expect((await store.get("old"))?.record).to.deep.equal(record("old"));
    },
  },
  {
    name: "keeps ids with any characters apart and returns them as they were",
    async run({ store }) {
      const odd = [
        "a/b/c",
        "with space",
        "dots.in.the.id",
        "ünïcødé-✓-🚀",
        "",
        ".",
        "../../etc/passwd",
        "b64.YS9i",
        "sha256.x",
        "a*b>c",
        "x".repeat(600),
        "ü".repeat(300),
        "plain_ID-with=equals",
      ];
      const revisions = new Map<string, number>();
      for (const [i, id] of odd.entries())
        revisions.set(id, await created(store, record(id, { taskData: { i } })));
      for (const [i, id] of odd.entries()) {
        expect(await store.get(id), id).to.deep.equal({
          record: record(id, { taskData: { i } }),
          revision: revisions.get(id),
        });
      }
      expect(ids(await store.unfinished())).to.deep.equal([...odd].sort());
      const outcome = await store.create(record("a/b/c"));
      expect(outcome.created).to.equal(false);
    },
  },
  {
    name: "keeps one heartbeat per replica, apart from the records, across a restart; sweeps the ended ones",
    async run(world) {
      const { store } = world;
      await created(store, record("a-task", { owner: "replica-a" }));
      await store.beat("replica-a", RECEIVED_AT + 30_000);
      await store.beat("pod/b.with dots", RECEIVED_AT + 20_000);
      await store.beat("replica-a", RECEIVED_AT + 40_000);
      await store.beat("stopped", 0);
      expect(await store.beats()).to.deep.equal(
        new Map([
          ["replica-a", RECEIVED_AT + 40_000],
          ["pod/b.with dots", RECEIVED_AT + 20_000],
          ["stopped", 0],
        ]),
      );
      // heartbeats are not records
      expect(ids(await store.unfinished())).to.deep.equal(["a-task"]);

      const reopened = await world.restart();
      expect((await reopened.beats()).get("replica-a")).to.equal(RECEIVED_AT + 40_000);
      expect(await reopened.sweep(RECEIVED_AT + 25_000)).to.equal(0);
      expect(await reopened.beats()).to.deep.equal(new Map([["replica-a", RECEIVED_AT + 40_000]]));
      expect(ids(await reopened.unfinished())).to.deep.equal(["a-task"]);
    },
  },
  {
    name: "keeps every record, its revision and the compare-and-set across a crash and restart",
    async run(world) {
      const { store } = world;
      const accepted = record("accepted-before-crash");
      const acceptedAt = await created(store, accepted);
      const started = record("started-before-crash", { phase: "started", taskData: { gitCommit: "abc123" } });
      const startedAt = await store.update(started, await created(store, record("started-before-crash")));
      const finished = done("done-before-crash", RECEIVED_AT + 1_000);
      const finishedAt = await created(store, finished);
      const weird = record("über/ship it.v2", { phase: "started" });
      const weirdAt = await created(store, weird);

      const reopened = await world.restart();

      expect(await reopened.get(accepted.id)).to.deep.equal({ record: accepted, revision: acceptedAt });
      expect(await reopened.get(started.id)).to.deep.equal({ record: started, revision: startedAt });
      expect(await reopened.get(finished.id)).to.deep.equal({ record: finished, revision: finishedAt });
      expect(await reopened.get(weird.id)).to.deep.equal({ record: weird, revision: weirdAt });
      expect(ids(await reopened.unfinished())).to.deep.equal([accepted.id, started.id, weird.id].sort());
      // a redelivery after the restart is recognised
      expect(await reopened.create(record(finished.id))).to.deep.equal({
        created: false,
        existing: { record: finished, revision: finishedAt },
      });
      // revisions read before the crash still guard the records
      const stale = await rejection(
        reopened.update(record(started.id, { phase: "finishing" }), startedAt - 1),
      );
      expect(stale).to.be.instanceOf(RevisionConflictError);
      const next = await reopened.update(record(started.id, { phase: "finishing" }), startedAt);
      expect(next).to.be.above(startedAt);
      expect(await reopened.sweep(RECEIVED_AT + 2_000)).to.equal(1);
      expect(await reopened.get(finished.id)).to.equal(undefined);
    },
  },
];

for (const backend of BACKENDS) {
  describe(`task store: ${backend.name}`, function () {
    this.timeout(20_000);
    let world: World;
    let stop: () => Promise<void>;

    beforeEach(async () => {
      ({ world, stop } = await backend.start());
    });

    afterEach(async () => {
      await stop();
    });

    for (const scenario of SCENARIOS) it(scenario.name, () => scenario.run(world));
  });
}

describe("task store: file, on disk", () => {
  let root: string;
  let dir: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "task-store-file-"));
    dir = join(root, "tasks");
  });

  afterEach(() => rm(root, { recursive: true, force: true }));

  it("creates the directory 0700 and writes one JSON file per record, with nothing left beside it", async () => {
    const store = await openStore(new FileTaskStore({ dir }));
    expect((await stat(dir)).mode & 0o777).to.equal(0o700);
    const revision = await created(store, record("a/b"));
    await store.update(record("a/b", { phase: "started" }), revision);
    expect(await readdir(dir)).to.deep.equal([recordFileName("a/b")]);
    const content: unknown = JSON.parse(await readFile(join(dir, recordFileName("a/b")), "utf8"));
    expect(content).to.deep.equal({ revision: revision + 1, record: record("a/b", { phase: "started" }) });
    expect(store.description).to.equal(
      `file task store at ${dir}, for one replica only (records are not shared between processes)`,
    );
  });

  it("ignores a temp file left by a crash mid-write, and removes it on the next open", async () => {
    const store = await openStore(new FileTaskStore({ dir }));
    await created(store, record("kept", { phase: "started" }));
    // what a crash between write and rename leaves: a partial temp file next to the records
    const leftover = `.${recordFileName("half-written")}.0a1b2c3d4e5f.tmp`;
    await writeFile(join(dir, leftover), '{"revision":1,"record":{"id":"half-wr');
    expect(ids(await store.unfinished())).to.deep.equal(["kept"]);
    expect(await store.get("half-written")).to.equal(undefined);
    expect(await store.sweep(Number.MAX_SAFE_INTEGER)).to.equal(0);

    const reopened = await openStore(new FileTaskStore({ dir }));
    expect(await readdir(dir)).to.deep.equal([recordFileName("kept")]);
    expect(ids(await reopened.unfinished())).to.deep.equal(["kept"]);
  });

  it("names the file and what to do when a record file is damaged", async () => {
    const store = await openStore(new FileTaskStore({ dir }));
    await writeFile(join(dir, recordFileName("damaged")), "{not json");
    const error = await rejection(store.unfinished());
    expect(error.message)
      .to.include(join(dir, recordFileName("damaged")))
      .and.include(`move it out of ${dir}`);
  });

  it("says what it could not do when the directory is gone", async () => {
    const store = await openStore(new FileTaskStore({ dir }));
    await rm(dir, { recursive: true });
    const error = await rejection(store.create(record("lost")));
    expect(error).to.be.instanceOf(TaskStoreUnavailableError);
    expect(error.message).to.match(new RegExp(`^could not create the record of task lost in ${dir}: ENOENT`));
  });

  it("keeps every write a killed process reported done, and nothing half-written", async function () {
    this.timeout(30_000);
    // a child process creates and updates records as fast as it can and reports each finished call; it is
    // killed with SIGKILL in the middle of that, at whatever write it is in
    const storeModule = fileURLToPath(new URL("../../src/task-store/file-task-store.ts", import.meta.url));
    const script = `
      import { FileTaskStore } from ${JSON.stringify(storeModule)};
      const store = new FileTaskStore({ dir: process.argv[1] });
      await store.open();
      const base = { task: "deployment", event: {}, receivedAt: 1, deadline: 2, taskData: {} };
      for (let i = 0; ; i++) {
        const id = "task/" + i;
        const outcome = await store.create({ ...base, id, phase: "accepted" });
        process.stdout.write("created " + id + " " + outcome.revision + "\\n");
        const revision = await store.update({ ...base, id, phase: "started" }, outcome.revision);
        process.stdout.write("updated " + id + " " + revision + "\\n");
      }
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, dir], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    let errors = "";
    child.stderr.on("data", (chunk: Buffer) => (errors += chunk.toString()));
    // "close": the process exited and its output was read to the end
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString();
        if (output.split("\n").length > 400) resolve();
      });
      void exited.then(() => reject(new Error(`the writer exited early:\n${errors}`)));
    });
    child.kill("SIGKILL");
    await exited;

    // only whole lines count: a line cut off by the kill was not reported
    const lines = output.split("\n").slice(0, -1);
    const reported = new Map<string, { phase: string; revision: number }>();
    for (const line of lines) {
      const [what, id, revision] = line.split(" ");
      reported.set(id!, { phase: what === "created" ? "accepted" : "started", revision: Number(revision) });
    }
    expect(reported.size).to.be.above(100);
    const last = lines.at(-1)!.split(" ")[1]!;

    const reopened = await openStore(new FileTaskStore({ dir }));
    const unfinished = await reopened.unfinished();
    const byId = new Map(unfinished.map((stored) => [stored.record.id, stored]));
    for (const [id, expected] of reported) {
      const stored = byId.get(id);
      if (id === last) {
        // it may have been updated after the last report, before the kill
        expect(stored?.revision, id).to.be.at.least(expected.revision);
        continue;
      }
      expect(stored?.revision, id).to.equal(expected.revision);
      expect(stored?.record.phase, id).to.equal(expected.phase);
    }
    // at most the task the writer was creating when it was killed is beyond what it reported
    expect(unfinished.length - reported.size).to.be.within(0, 1);
    // the temp file of the write the kill interrupted, if any, is gone after the open
    expect((await readdir(dir)).filter((name) => name.startsWith("."))).to.deep.equal([]);
  });
});

describe("task store: jetstream, against the server", function () {
  this.timeout(30_000);
  let server: NatsServerProcess;
  let connection: NatsConnection;

  beforeEach(async () => {
    server = await NatsServerProcess.start({ jetstream: true });
    connection = await natsConnect(server);
  });

  afterEach(async () => {
    await connection.close();
    await server.stop();
  });

  it("describes the bucket and its replicas", async () => {
    const store = new JetStreamTaskStore({ connection, bucket: BUCKET, replicas: 1 });
    await store.open();
    expect(store.description).to.equal(`JetStream key-value bucket ${BUCKET} with 1 replica`);
  });

  it("says why a bucket with 3 replicas cannot be made on a single server", async () => {
    const store = new JetStreamTaskStore({ connection, bucket: BUCKET, replicas: 3 });
    const error = await rejection(store.open());
    expect(error).to.not.be.instanceOf(TaskStoreUnavailableError);
    expect(error.message).to.equal(
      `could not open the JetStream key-value bucket ${BUCKET} with 3 replicas: replicas > 1 not supported in non-clustered mode`,
    );
  });

  it("is unavailable while NATS is down, saying what it attempted, and works again when it is back", async () => {
    const store = new JetStreamTaskStore({ connection, bucket: BUCKET, replicas: 1 });
    await store.open();
    const revision = await created(store, record("outage"));
    await server.kill("SIGKILL");

    const error = await rejection(store.get("outage"));
    expect(error).to.be.instanceOf(TaskStoreUnavailableError);
    expect(error.message).to.equal(
      `could not read the task record outage in JetStream bucket ${BUCKET}: TIMEOUT`,
    );

    await server.restart();
    // the connection reconnects by itself and the same store serves again; a call in flight across the
    // reconnect times out (the caller retries), so poll
    const stored = await waitFor(() => store.get("outage"), {
      timeoutMs: 20_000,
      what: "the store after NATS is back",
    });
    expect(stored).to.deep.equal({ record: record("outage"), revision });
  });

  it("refuses a record larger than NATS accepts, as an error that retrying does not fix", async () => {
    const store = new JetStreamTaskStore({ connection, bucket: BUCKET, replicas: 1 });
    await store.open();
    const huge = record("huge", { event: { data: "x".repeat(2 * 1024 * 1024) } });
    const error = await rejection(store.create(huge));
    expect(error).to.not.be.instanceOf(TaskStoreUnavailableError);
    expect(error.message).to.equal(
      `could not create the record of task huge in JetStream bucket ${BUCKET}: the record is larger than the NATS server accepts (max_payload)`,
    );
    expect(await store.get("huge")).to.equal(undefined);
  });

  it("skips a deleted key in listings and reads it as nothing", async () => {
    const store = new JetStreamTaskStore({ connection, bucket: BUCKET, replicas: 1 });
    await store.open();
    await created(store, record("kept"));
    await created(store, record("deleted-by-hand"));
    // an operator deletes a key with the nats CLI: a DEL marker stays in the stream
    const kv = await connection.jetstream().views.kv(BUCKET);
    await kv.delete("deleted-by-hand");
    expect((await kv.get("deleted-by-hand"))?.operation).to.equal("DEL");

    expect(await store.get("deleted-by-hand")).to.equal(undefined);
    expect(ids(await store.unfinished())).to.deep.equal(["kept"]);
    expect((await store.create(record("deleted-by-hand"))).created).to.equal(true);
  });

  it("leaves no delete marker behind a sweep", async () => {
    const store = new JetStreamTaskStore({ connection, bucket: BUCKET, replicas: 1 });
    await store.open();
    await created(store, done("swept", RECEIVED_AT));
    expect(await store.sweep(RECEIVED_AT + 1)).to.equal(1);
    const kv = await connection.jetstream().views.kv(BUCKET);
    expect(await kv.get("swept")).to.equal(null);
    expect((await kv.status()).values).to.equal(0);
  });
});
