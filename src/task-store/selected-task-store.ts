import type { CreateOutcome, StoredTask, TaskRecord, TaskStore } from "./task-store.js";

/**
 * A store chosen when it is opened, not when the service is built: whether NATS has JetStream is known only once
 * the control plane is connected (`state.store: auto`). Everything else is passed through.
 */
export class SelectedTaskStore implements TaskStore {
  private chosen: TaskStore | undefined;

  constructor(private readonly choose: () => Promise<TaskStore>) {}

  get description(): string {
    return this.chosen?.description ?? "task store not open yet";
  }

  async open(): Promise<void> {
    this.chosen ??= await this.choose();
    await this.chosen.open();
  }

  create(record: TaskRecord): Promise<CreateOutcome> {
    return this.store().create(record);
  }

  get(id: string): Promise<StoredTask | undefined> {
    return this.store().get(id);
  }

  update(record: TaskRecord, revision: number): Promise<number> {
    return this.store().update(record, revision);
  }

  unfinished(): Promise<StoredTask[]> {
    return this.store().unfinished();
  }

  sweep(before: number): Promise<number> {
    return this.store().sweep(before);
  }

  beat(replica: string, until: number): Promise<void> {
    return this.store().beat(replica, until);
  }

  beats(): Promise<Map<string, number>> {
    return this.store().beats();
  }

  async close(): Promise<void> {
    await this.chosen?.close();
  }

  private store(): TaskStore {
    if (!this.chosen) throw new Error("the task store was used before open()");
    return this.chosen;
  }
}
