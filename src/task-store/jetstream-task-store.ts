import { createHash } from "node:crypto";
import { ErrorCode, NatsError, type JetStreamManager, type KV, type NatsConnection } from "nats";
import type { z } from "zod";
import { errorMessage } from "../shared/errors.js";
import {
  RevisionConflictError,
  TaskStoreUnavailableError,
  parseHeartbeat,
  storedRecordSchema,
  type CreateOutcome,
  type StoredTask,
  type TaskRecord,
  type TaskStore,
} from "./task-store.js";

export interface JetStreamTaskStoreOptions {
  /** Owned by the caller: `close()` leaves it open. */
  connection: NatsConnection;
  bucket: string;
  /** Copies of the bucket in a NATS cluster (1, 3 or 5); more than 1 needs clustered JetStream. */
  replicas: number;
}

/**
 * nats-server answers a failed "expected last subject sequence" check (kv.create of an existing key, kv.update
 * or kv.delete at another revision) with JetStream API error 10071, JSStreamWrongLastSequenceErrF,
 * "wrong last sequence: <n>" (code 400); nats.js keeps it in `api_error`.
 */
const WRONG_LAST_SEQUENCE = 10071;
/** A create that finds a key which is deleted before it can be read tries again, this often. */
const CREATE_ATTEMPTS = 3;
/** Records read at once by `unfinished()` and `sweep()`. */
const READ_BATCH = 64;
/** Longer keys are hashed, to stay far below NATS' subject limits. */
const MAX_KEY = 256;
/** Ids used as keys as they are: KV keys allow [-/_=.A-Za-z0-9]; without `.` they never collide with the rest. */
const PLAIN_KEY = /^[A-Za-z0-9_=-]+$/;

/** The key of a record: the id itself when it is a plain key, else `b64.<base64url>`, else `sha256.<hex>`. */
export function recordKey(id: string): string {
  if (PLAIN_KEY.test(id) && id.length <= MAX_KEY) return id;
  const encoded = Buffer.from(id, "utf8").toString("base64url");
  if (encoded.length > 0 && encoded.length <= MAX_KEY - 4) return `b64.${encoded}`;
  return `sha256.${createHash("sha256").update(id, "utf8").digest("hex")}`;
}

/** Heartbeats are kept under `replica.<recordKey(replica)>`; record keys never start with it. */
const HEARTBEAT_PREFIX = "replica.";

/** What `open()` found: the bucket, its stream, and the replicas it really has. */
interface OpenedBucket {
  kv: KV;
  manager: JetStreamManager;
  stream: string;
  replicas: number;
}

/**
 * Task records in a JetStream key-value bucket: one key per task, the value is the record as JSON, the revision
 * is the KV revision (the stream sequence, so it never repeats, even for an id that is deleted and created again).
 * `create` and `update` are compare-and-set on the server, so they hold across replicas of the service; with
 * `replicas` > 1 the bucket survives the loss of a NATS server in a cluster.
 */
export class JetStreamTaskStore implements TaskStore {
  private opened: OpenedBucket | undefined;

  constructor(private readonly options: JetStreamTaskStoreOptions) {}

  get description(): string {
    const replicas = this.opened?.replicas ?? this.options.replicas;
    return `JetStream key-value bucket ${this.options.bucket} with ${replicas} ${replicas === 1 ? "replica" : "replicas"}`;
  }

  async open(): Promise<void> {
    const { connection, bucket, replicas } = this.options;
    const what = `open the JetStream key-value bucket ${bucket} with ${replicas} replicas`;
    try {
      // creates the bucket if it is missing; an existing bucket is used as it is
      const kv = await connection.jetstream().views.kv(bucket, { history: 1, replicas });
      const status = await kv.status();
      const manager = await connection.jetstreamManager();
      this.opened = { kv, manager, stream: status.streamInfo.config.name, replicas: status.replicas };
    } catch (error) {
      if (error instanceof NatsError && error.api_error !== undefined) {
        // a refusal, not an outage (e.g. "replicas > 1 not supported in non-clustered mode")
        throw new Error(`could not ${what}: ${error.api_error.description}`, { cause: error });
      }
      const hint =
        error instanceof NatsError && error.code === ErrorCode.NoResponders
          ? " (no JetStream answered: is JetStream enabled on the NATS server?)"
          : "";
      throw new TaskStoreUnavailableError(`could not ${what}: ${errorMessage(error)}${hint}`, {
        cause: error,
      });
    }
  }

  async create(record: TaskRecord): Promise<CreateOutcome> {
    const key = recordKey(record.id);
    const value = JSON.stringify(record);
    const what = `create the record of task ${record.id}`;
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      try {
        return { created: true, revision: await this.bucket().create(key, value) };
      } catch (error) {
        if (!isWrongLastSequence(error)) throw this.failure(what, error);
      }
      const existing = await this.read(key);
      if (existing !== undefined) return { created: false, existing };
      // the key was deleted before it could be read: the id is free again
    }
    throw new TaskStoreUnavailableError(
      `could not ${what} in JetStream bucket ${this.options.bucket}: it was deleted and recreated ${CREATE_ATTEMPTS} times meanwhile`,
    );
  }

  get(id: string): Promise<StoredTask | undefined> {
    return this.read(recordKey(id));
  }

  async update(record: TaskRecord, revision: number): Promise<number> {
    // nats.js throws for revision 0; no record is ever at a revision below 1
    if (!Number.isSafeInteger(revision) || revision < 1) throw new RevisionConflictError(record.id, revision);
    try {
      return await this.bucket().update(recordKey(record.id), JSON.stringify(record), revision);
    } catch (error) {
      if (isWrongLastSequence(error)) throw new RevisionConflictError(record.id, revision, { cause: error });
      throw this.failure(`update the record of task ${record.id}`, error);
    }
  }

  async unfinished(): Promise<StoredTask[]> {
    return (await this.all()).filter((stored) => stored.record.phase !== "done");
  }

  async sweep(before: number): Promise<number> {
    let swept = 0;
    for (const stored of await this.all()) {
      const { record } = stored;
      if (record.phase !== "done" || record.doneAt === undefined || record.doneAt >= before) continue;
      try {
        // only at the revision that was read: a record updated meanwhile stays for the next sweep
        await this.bucket().delete(recordKey(record.id), { previousSeq: stored.revision });
      } catch (error) {
        if (isWrongLastSequence(error)) continue;
        throw this.failure(`delete the record of task ${record.id}`, error);
      }
      swept++;
      await this.removeDeleteMarker(recordKey(record.id));
    }
    for (const [replica, until] of await this.beats()) {
      if (until >= before) continue;
      const key = `${HEARTBEAT_PREFIX}${recordKey(replica)}`;
      await this.call(`delete the heartbeat ${key}`, (kv) => kv.delete(key));
      await this.removeDeleteMarker(key);
    }
    return swept;
  }

  async beat(replica: string, until: number): Promise<void> {
    const key = `${HEARTBEAT_PREFIX}${recordKey(replica)}`;
    await this.call(`write the heartbeat of replica ${replica}`, (kv) =>
      kv.put(key, JSON.stringify({ replica, until })),
    );
  }

  async beats(): Promise<Map<string, number>> {
    const beats = new Map<string, number>();
    for (const key of await this.listKeys(`${HEARTBEAT_PREFIX}>`)) {
      const entry = await this.call(`read the heartbeat ${key}`, (kv) => kv.get(key));
      const beat = entry?.operation === "PUT" ? parseHeartbeat(entry.string()) : undefined;
      if (beat) beats.set(beat.replica, beat.until);
    }
    return beats;
  }

  async close(): Promise<void> {
    // the connection belongs to the caller; nothing else is held
    this.opened = undefined;
  }

  private bucket(): KV {
    return this.requireOpened().kv;
  }

  private requireOpened(): OpenedBucket {
    if (this.opened === undefined)
      throw new Error(`open() the task store (${this.description}) before using it`);
    return this.opened;
  }

  /**
   * A delete leaves a marker message under the key for good, and keys() reads past every marker. This purges the
   * marker (and anything older) from the stream, but not a record created under the key since.
   */
  private async removeDeleteMarker(key: string): Promise<void> {
    const marker = await this.call(`read the delete marker of ${key}`, (kv) => kv.get(key));
    if (marker === null || marker.operation === "PUT") return;
    const { manager, stream } = this.requireOpened();
    const filter = `$KV.${this.options.bucket}.${key}`;
    await this.call(`remove the delete marker of ${key}`, () =>
      manager.streams.purge(stream, { filter, seq: marker.revision + 1 }),
    );
  }

  private async all(): Promise<StoredTask[]> {
    const keys = (await this.listKeys()).filter((key) => !key.startsWith(HEARTBEAT_PREFIX));
    const all: StoredTask[] = [];
    for (let start = 0; start < keys.length; start += READ_BATCH) {
      const batch = await Promise.all(keys.slice(start, start + READ_BATCH).map((key) => this.read(key)));
      for (const stored of batch) if (stored !== undefined) all.push(stored);
    }
    return all;
  }

  /** The keys of the bucket (those matching `filter`); keys() leaves out deleted and purged keys. */
  private listKeys(filter?: string): Promise<string[]> {
    return this.call("list the keys", async (kv) => {
      const listed: string[] = [];
      for await (const key of await kv.keys(filter)) listed.push(key);
      return listed;
    });
  }

  /** The record under `key`; undefined when there is none, or it was deleted (a DEL or PURGE marker). */
  private async read(key: string): Promise<StoredTask | undefined> {
    const entry = await this.call(`read the task record ${key}`, (kv) => kv.get(key));
    if (entry === null || entry.operation !== "PUT") return undefined;
    let record: z.infer<typeof storedRecordSchema>;
    try {
      record = storedRecordSchema.parse(JSON.parse(entry.string()));
    } catch (error) {
      throw new Error(
        `the value of key ${key} in JetStream bucket ${this.options.bucket} is not a task record: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    if (recordKey(record.id) !== key) {
      throw new Error(
        `key ${key} in JetStream bucket ${this.options.bucket} holds the record of task ${record.id}, which belongs under ${recordKey(record.id)}`,
      );
    }
    // the fields the store relies on are checked; the rest is what this store wrote from a TaskRecord
    return { record: record as unknown as TaskRecord, revision: entry.revision };
  }

  private async call<T>(what: string, work: (kv: KV) => Promise<T>): Promise<T> {
    const kv = this.bucket();
    try {
      return await work(kv);
    } catch (error) {
      throw this.failure(what, error);
    }
  }

  /**
   * Timeouts, a lost or closed connection, no responders: TaskStoreUnavailableError, to try again. After a
   * timeout the write may still have happened; read the record before writing again.
   */
  private failure(what: string, error: unknown): Error {
    const where = `in JetStream bucket ${this.options.bucket}`;
    if (error instanceof NatsError && error.code === ErrorCode.MaxPayloadExceeded) {
      return new Error(
        `could not ${what} ${where}: the record is larger than the NATS server accepts (max_payload)`,
        {
          cause: error,
        },
      );
    }
    return new TaskStoreUnavailableError(`could not ${what} ${where}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}

function isWrongLastSequence(error: unknown): boolean {
  return error instanceof NatsError && error.api_error?.err_code === WRONG_LAST_SEQUENCE;
}
