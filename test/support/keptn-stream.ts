import { connect, RetentionPolicy, StorageType } from "nats";

/**
 * Creates the JetStream stream Keptn's shipyard-controller creates at its start (protocol.md §1): name `keptn`,
 * subjects `sh.keptn.>`, file storage. Every `sh.keptn.>` event published on core NATS is then kept in it.
 */
export async function createKeptnStream(natsUrl: string): Promise<void> {
  const connection = await connect({ servers: natsUrl });
  try {
    const manager = await connection.jetstreamManager();
    await manager.streams.add({
      name: "keptn",
      subjects: ["sh.keptn.>"],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
    });
  } finally {
    await connection.close();
  }
}
