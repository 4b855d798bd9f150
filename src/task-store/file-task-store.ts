import { createHash, randomBytes } from "node:crypto";
import { link, mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { errorMessage } from "../shared/errors.js";
import { KeyedMutex } from "../shared/keyed-mutex.js";
import {
  RevisionConflictError,
  TaskStoreUnavailableError,
  parseHeartbeat,
  storedRecordSchema,
  type CreateOutcome,
  type StoredTask,
  type TaskPhase,
  type TaskRecord,
  type TaskStore,
} from "./task-store.js";

export interface FileTaskStoreOptions {
  /** The directory of the records; `open()` creates it with mode 0700. */
  dir: string;
}

const FIRST_REVISION = 1;
/** A create that finds a record which is swept before it can be read tries again, this often. */
const CREATE_ATTEMPTS = 3;
/** Longer encoded ids are hashed: a file name may have at most 255 bytes, and the temp name adds ~25. */
const MAX_ENCODED_ID = 200;
/** `id-<base64url>.json` or `sha256-<hex>.json`. Temp files start with a dot and never match. */
const RECORD_FILE = /^(id-[A-Za-z0-9_-]*|sha256-[0-9a-f]{64})\.json$/;
const TEMP_FILE = /^\..*\.tmp$/;
/** `replica-<base64url of the replica id>.json`: a heartbeat. Never matches RECORD_FILE. */
const HEARTBEAT_FILE = /^replica-[A-Za-z0-9_-]*\.json$/;

/** What a record file holds: its revision and the record. */
const recordFileSchema = z.object({ revision: z.number().int().positive(), record: storedRecordSchema });

/** The file name of a record: base64url of the id (any string is safe), or its SHA-256 when that is too long. */
export function recordFileName(id: string): string {
  const encoded = Buffer.from(id, "utf8").toString("base64url");
  if (encoded.length <= MAX_ENCODED_ID) return `id-${encoded}.json`;
  return `sha256-${createHash("sha256").update(id, "utf8").digest("hex")}.json`;
}

/** The file of a replica's heartbeat: `replica-` and the record file name's encoding of the replica id. */
function heartbeatFileName(replica: string): string {
  return `replica-${recordFileName(replica).replace(/^(id|sha256)-/, "")}`;
}

/**
 * Task records as files: one JSON file `{ revision, record }` per task in one directory.
 *
 * For ONE process only. Compare-and-set holds because this process serialises the updates of each id in memory
 * (KeyedMutex); a second process on the same directory (another replica on a shared volume) would overwrite its
 * updates unseen. Use the JetStream store for several replicas.
 *
 * Every write is crash-safe: the content goes to a temp file in the same directory, which is fsynced and then
 * linked (create: fails if the record exists, so exactly one create wins) or renamed (update) onto the record's
 * name; then the directory is fsynced. A crash leaves either the old or the new file, plus at most a temp file,
 * which is never read as a record and is removed by the next `open()`. Needs a file system with hard links.
 */
export class FileTaskStore implements TaskStore {
  readonly description: string;
  private readonly dir: string;
  private readonly mutex = new KeyedMutex();

  constructor(options: FileTaskStoreOptions) {
    this.dir = options.dir;
    this.description = `file task store at ${options.dir}, for one replica only (records are not shared between processes)`;
  }

  async open(): Promise<void> {
    await this.io(`create the task store directory ${this.dir}`, async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      // left by a crash during a write; at open no write of this process is under way
      for (const name of await readdir(this.dir)) {
        if (TEMP_FILE.test(name)) await rm(join(this.dir, name), { force: true });
      }
    });
  }

  async create(record: TaskRecord): Promise<CreateOutcome> {
    const name = recordFileName(record.id);
    const content = serialize(FIRST_REVISION, record);
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      const created = await this.io(`create the record of task ${record.id} in ${this.dir}`, () =>
        this.writeNew(name, content),
      );
      if (created) return { created: true, revision: FIRST_REVISION };
      const existing = await this.read(name);
      if (existing !== undefined) return { created: false, existing };
      // the existing record was swept before it could be read: the id is free again
    }
    throw new TaskStoreUnavailableError(
      `could not create the record of task ${record.id} in ${this.dir}: it was deleted and recreated ${CREATE_ATTEMPTS} times meanwhile`,
    );
  }

  async beat(replica: string, until: number): Promise<void> {
    const name = heartbeatFileName(replica);
    await this.mutex.run(name, () =>
      this.io(`write the heartbeat of replica ${replica} in ${this.dir}`, () =>
        this.replace(name, `${JSON.stringify({ replica, until })}\n`),
      ),
    );
  }

  async beats(): Promise<Map<string, number>> {
    const beats = new Map<string, number>();
    for (const name of await this.heartbeatFiles()) {
      const text = await readFile(this.path(name), "utf8").catch(() => undefined);
      const beat = text === undefined ? undefined : parseHeartbeat(text);
      if (beat) beats.set(beat.replica, beat.until);
    }
    return beats;
  }

  get(id: string): Promise<StoredTask | undefined> {
    return this.read(recordFileName(id));
  }

  async update(record: TaskRecord, revision: number): Promise<number> {
    const name = recordFileName(record.id);
    return this.mutex.run(name, async () => {
      const current = await this.read(name);
      if (current?.revision !== revision) throw new RevisionConflictError(record.id, revision);
      const next = revision + 1;
      await this.io(`update the record of task ${record.id} in ${this.dir}`, () =>
        this.replace(name, serialize(next, record)),
      );
      return next;
    });
  }

  async unfinished(): Promise<StoredTask[]> {
    return (await this.all()).filter((stored) => stored.record.phase !== "done");
  }

  async sweep(before: number): Promise<number> {
    let swept = 0;
    for (const stored of await this.all()) {
      if (!isExpired(stored.record, before)) continue;
      const name = recordFileName(stored.record.id);
      const deleted = await this.mutex.run(name, async () => {
        // updated since it was listed: leave it to the next sweep
        if ((await this.read(name))?.revision !== stored.revision) return false;
        await this.io(`delete the record of task ${stored.record.id} in ${this.dir}`, () =>
          rm(this.path(name), { force: true }),
        );
        return true;
      });
      if (deleted) swept++;
    }
    let ended = 0;
    for (const [replica, until] of await this.beats()) {
      if (until >= before) continue;
      const name = heartbeatFileName(replica);
      await this.io(`delete the heartbeat of replica ${replica} in ${this.dir}`, () =>
        rm(this.path(name), { force: true }),
      );
      ended++;
    }
    if (swept + ended > 0) await this.io(`sync the task store directory ${this.dir}`, () => this.syncDir());
    return swept;
  }

  async close(): Promise<void> {
    // every write is on disk when its call returns; nothing is held open
  }

  private path(name: string): string {
    return join(this.dir, name);
  }

  private async heartbeatFiles(): Promise<string[]> {
    const names = await this.io(`list the heartbeats in ${this.dir}`, () => readdir(this.dir));
    return names.filter((name) => HEARTBEAT_FILE.test(name));
  }

  private async all(): Promise<StoredTask[]> {
    const names = await this.io(`list the task records in ${this.dir}`, () => readdir(this.dir));
    const all: StoredTask[] = [];
    for (const name of names.filter((each) => RECORD_FILE.test(each))) {
      const stored = await this.read(name);
      if (stored !== undefined) all.push(stored);
    }
    return all;
  }

  /** The record in file `name`; undefined when there is none. */
  private async read(name: string): Promise<StoredTask | undefined> {
    const path = this.path(name);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      if (errorCode(error) === "ENOENT") return undefined;
      throw new TaskStoreUnavailableError(`could not read the task record ${path}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
    let parsed: z.infer<typeof recordFileSchema>;
    try {
      parsed = recordFileSchema.parse(JSON.parse(text));
    } catch (error) {
      throw new Error(`${path} is not a task record: ${errorMessage(error)}; move it out of ${this.dir}`, {
        cause: error,
      });
    }
    if (recordFileName(parsed.record.id) !== name) {
      throw new Error(
        `${path} holds the record of task ${parsed.record.id}, which belongs in ${recordFileName(parsed.record.id)}; move it out of ${this.dir}`,
      );
    }
    // the fields the store relies on are checked; the rest is what this store wrote from a TaskRecord
    return { record: parsed.record as unknown as TaskRecord, revision: parsed.revision };
  }

  /** Writes file `name` unless it exists; answers whether it did. link() never replaces its target. */
  private async writeNew(name: string, content: string): Promise<boolean> {
    const temp = await this.writeTemp(name, content);
    try {
      await link(temp, this.path(name));
    } catch (error) {
      if (errorCode(error) === "EEXIST") return false;
      throw error;
    } finally {
      await rm(temp, { force: true });
    }
    await this.syncDir();
    return true;
  }

  /** Replaces file `name`: rename() swaps the whole file at once. */
  private async replace(name: string, content: string): Promise<void> {
    const temp = await this.writeTemp(name, content);
    try {
      await rename(temp, this.path(name));
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    await this.syncDir();
  }

  /** A new temp file next to the record, with `content` on disk (fsynced). */
  private async writeTemp(name: string, content: string): Promise<string> {
    const temp = this.path(`.${name}.${randomBytes(6).toString("hex")}.tmp`);
    const handle = await open(temp, "wx", 0o600);
    try {
      await handle.writeFile(content, "utf8");
      await handle.sync();
    } catch (error) {
      await handle.close();
      await rm(temp, { force: true });
      throw error;
    }
    await handle.close();
    return temp;
  }

  /** Makes the directory's entries (a link, rename or unlink) durable. */
  private async syncDir(): Promise<void> {
    const handle = await open(this.dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Runs file-system work; its failures become TaskStoreUnavailableError saying what was attempted. */
  private async io<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw new TaskStoreUnavailableError(`could not ${what}: ${errorMessage(error)}`, { cause: error });
    }
  }
}

function serialize(revision: number, record: TaskRecord): string {
  return `${JSON.stringify({ revision, record })}\n`;
}

function isExpired(record: { phase: TaskPhase; doneAt?: number }, before: number): boolean {
  return record.phase === "done" && record.doneAt !== undefined && record.doneAt < before;
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}
