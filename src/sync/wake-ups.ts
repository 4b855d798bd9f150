/**
 * Where notifications (Flux, Argo CD Notifications) reach the deployments that wait. A notification names a tool
 * and an object; every deployment waiting on that object reads the tool's API at once instead of at its next
 * poll. It never decides anything itself: duplicate, late or early notifications only cause one more read.
 */
export class WakeUps {
  private readonly waiting = new Map<string, Set<{ namespace: string | undefined; wake: () => void }>>();

  /** Registers a waiting deployment; returns the function that removes it. */
  register(
    tool: "argocd" | "flux",
    namespace: string | undefined,
    name: string,
    wake: () => void,
  ): () => void {
    const key = `${tool}/${name}`;
    let set = this.waiting.get(key);
    if (!set) this.waiting.set(key, (set = new Set()));
    const entry = { namespace, wake };
    set.add(entry);
    return () => {
      set.delete(entry);
      if (set.size === 0) this.waiting.delete(key);
    };
  }

  /**
   * Wakes the deployments waiting on `name` (in `namespace`, when the notification names one); returns how many.
   */
  wake(tool: "argocd" | "flux", namespace: string | undefined, name: string): number {
    let woken = 0;
    for (const entry of this.waiting.get(`${tool}/${name}`) ?? []) {
      if (namespace !== undefined && entry.namespace !== undefined && entry.namespace !== namespace) continue;
      entry.wake();
      woken++;
    }
    return woken;
  }
}
