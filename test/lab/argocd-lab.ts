import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type {
  ArgoCdBackend,
  ArgoCdBackendFactory,
  ClusterLevers,
  GitopsSetup,
  LabApplication,
} from "../e2e/argocd-backend.js";
import { APPLICATIONS } from "../e2e/argocd-backend.js";
import { freePort } from "../support/nats-server.js";
import { RecordingProxy } from "../support/recording-proxy.js";
import { waitFor } from "../support/wait.js";
import { refusalPolicy, SYNCFAIL_POLICY, type KubeLab, type KubeObject } from "./kube-lab.js";
import { LabProcess } from "./lab-process.js";
import { labDir } from "./lab-paths.js";

const run = promisify(execFile);
const NAMESPACE = "argocd";
const ADMIN_PASSWORD = "lab-admin-password";

/** The annotation of a live Deployment that sets its health from outside (`ClusterLevers.setLiveHealth`). */
const HEALTH_ANNOTATION = "lab.keptn.sh/health";

/**
 * Health of a Deployment in a cluster without nodes: no pod ever runs, so the lab decides from the image what a
 * real rollout would show (an Argo CD resource health customization, as users write them in argocd-cm). The
 * annotation `lab.keptn.sh/health` on the live object comes first: the never-fooled traps make the health flap
 * with it. Argo CD does not count it as a difference to git (it is not in the last applied configuration).
 */
const DEPLOYMENT_HEALTH = `hs = {}
local annotations = obj.metadata.annotations
if annotations ~= nil and annotations["${HEALTH_ANNOTATION}"] ~= nil then
  hs.status = annotations["${HEALTH_ANNOTATION}"]
  hs.message = "lab: health set by the annotation ${HEALTH_ANNOTATION}"
  return hs
end
for _, container in ipairs(obj.spec.template.spec.containers) do
  if string.find(container.image, "crashloop", 1, true) then
    hs.status = "Degraded"
    hs.message = "Back-off restarting failed container " .. container.name
    return hs
  end
  if string.find(container.image, "hang", 1, true) then
    hs.status = "Progressing"
    hs.message = "Waiting for rollout to finish: 0 of 1 updated replicas are available..."
    return hs
  end
end
hs.status = "Healthy"
hs.message = "lab: no nodes; the image is accepted"
return hs
`;

/**
 * A PostSync hook that really fails to apply: the API server refuses the check ConfigMaps of
 * `paymentsGitopsFiles` (label `lab.keptn.sh/check: postsync`) for images tagged hookfail, while the Deployment
 * with that image is accepted.
 */
const HOOKFAIL_POLICY: KubeObject[] = refusalPolicy({
  name: "lab-refuse-hookfail-checks",
  apiGroup: "",
  resource: "configmaps",
  objectSelector: { matchLabels: { "lab.keptn.sh/check": "postsync" } },
  expression: "!has(object.data) || object.data.all(k, !object.data[k].contains('hookfail'))",
  message: "the lab refuses PostSync checks of images tagged hookfail",
});

/** The default AppProject: everything allowed, and a deny sync window for each app in `denied`. */
function defaultProject(denied: Iterable<string>): KubeObject {
  const applications = [...denied];
  return {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "AppProject",
    metadata: { name: "default", namespace: NAMESPACE },
    spec: {
      sourceRepos: ["*"],
      destinations: [{ server: "*", namespace: "*" }],
      clusterResourceWhitelist: [{ group: "*", kind: "*" }],
      ...(applications.length > 0
        ? { syncWindows: [{ kind: "deny", schedule: "* * * * *", duration: "24h", applications }] }
        : {}),
    },
  };
}

function application(app: LabApplication, repoURL: string, server: string): KubeObject {
  return {
    apiVersion: "argoproj.io/v1alpha1",
    kind: "Application",
    metadata: { name: app.name, namespace: NAMESPACE },
    spec: {
      project: "default",
      source: {
        repoURL,
        path: app.path,
        targetRevision: "main",
        ...(app.valueFiles ? { helm: { valueFiles: app.valueFiles } } : {}),
      },
      destination: { server, namespace: app.namespace },
      syncPolicy: {
        ...(app.automated ? { automated: { prune: true } } : {}),
        ...(app.retry ? { retry: app.retry } : {}),
        syncOptions: ["CreateNamespace=true"],
      },
      ...(app.ignoreDifferences ? { ignoreDifferences: app.ignoreDifferences } : {}),
    },
  };
}

export interface ArgoCdLabOptions {
  /** The applications to create; default `APPLICATIONS`. */
  applications?: LabApplication[];
  /** Also run argocd-notifications with this argocd-notifications-cm (and -secret). */
  notifications?: { configMap: Record<string, string>; secret?: Record<string, string> };
}

/**
 * The real Argo CD (v3, one `argocd` binary started as argocd-repo-server, argocd-application-controller and
 * argocd-server) against the lab's kube-apiserver, with Debian's redis. The service reaches argocd-server
 * through a RecordingProxy, so the scenarios can assert on its calls as they do with the simulator.
 */
export class ArgoCdLab implements ArgoCdBackend {
  private readonly denied = new Set<string>();

  private constructor(
    private readonly kube: KubeLab,
    private readonly proxy: RecordingProxy,
    readonly token: string,
    readonly serverUrl: string,
    private readonly processes: LabProcess[],
    private readonly applications: LabApplication[],
  ) {}

  readonly levers: ClusterLevers = {
    denySyncs: async (app, denied) => {
      if (denied) this.denied.add(app);
      else this.denied.delete(app);
      await this.kube.apply(defaultProject(this.denied));
      // The controller and argocd-server read projects from informers: wait until the server has the change.
      await waitFor(
        async () => {
          const response = await fetch(`${this.serverUrl}/api/v1/applications/${app}/syncwindows`, {
            headers: { authorization: `Bearer ${this.token}` },
          });
          const body = (await response.json()) as { canSync?: boolean };
          if (!response.ok) throw new Error(`${response.status} ${JSON.stringify(body)}`);
          return body.canSync === !denied;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: `argocd-server to see the sync window of ${app}` },
      );
    },
    setLiveHealth: async (app, health) => {
      const namespace = this.applications.find((candidate) => candidate.name === app)?.namespace;
      if (!namespace) throw new Error(`the lab has no application ${app}`);
      // The charts name the Deployment after the release, which Argo CD names after the application.
      const patched = await this.kube.request(
        "PATCH",
        `/apis/apps/v1/namespaces/${namespace}/deployments/${app}`,
        { metadata: { annotations: { [HEALTH_ANNOTATION]: health ?? null } } },
        "application/merge-patch+json",
      );
      if (patched.status !== 200)
        throw new Error(
          `patching the Deployment of ${app}: ${patched.status} ${JSON.stringify(patched.body)}`,
        );
    },
  };

  get url(): string {
    return this.proxy.url;
  }

  get requests() {
    return this.proxy.requests;
  }

  injectFailures(count: number, status?: number): void {
    this.proxy.injectFailures(count, status);
  }

  static backend(kube: KubeLab, dir: string, options: ArgoCdLabOptions = {}): ArgoCdBackendFactory {
    return (setup) => ArgoCdLab.start(kube, dir, setup, options);
  }

  /**
   * Points argocd-notifications (started with `notifications`) at the service: replaces argocd-notifications-cm
   * with `configMap` and the secret with `secret`; the controller watches both.
   */
  async sendNotifications(configMap: Record<string, string>, secret: Record<string, string>): Promise<void> {
    const labels = { "app.kubernetes.io/part-of": "argocd" };
    await this.kube.apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "argocd-notifications-secret", namespace: NAMESPACE, labels },
      stringData: secret,
    });
    await this.kube.apply({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "argocd-notifications-cm", namespace: NAMESPACE, labels },
      data: configMap,
    });
  }

  static async start(
    kube: KubeLab,
    dir: string,
    setup: GitopsSetup,
    options: ArgoCdLabOptions = {},
  ): Promise<ArgoCdLab> {
    const bin = join(labDir(), "bin");
    const processes: LabProcess[] = [];
    try {
      await kube.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE } });
      await kube.installCrds(join(labDir(), "crds", "argocd"));
      for (const object of [...SYNCFAIL_POLICY, ...HOOKFAIL_POLICY]) await kube.apply(object);
      const { stdout: hash } = await run(join(bin, "argocd"), [
        "account",
        "bcrypt",
        "--password",
        ADMIN_PASSWORD,
      ]);
      const labels = { "app.kubernetes.io/part-of": "argocd" };
      await kube.apply({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "argocd-cm", namespace: NAMESPACE, labels },
        data: {
          "admin.enabled": "true",
          "resource.customizations.health.apps_Deployment": DEPLOYMENT_HEALTH,
          // Health scripts run without Lua's string library unless this is set.
          "resource.customizations.useOpenLibs.apps_Deployment": "true",
        },
      });
      await kube.apply({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "argocd-rbac-cm", namespace: NAMESPACE, labels },
        data: { "policy.default": "role:admin" },
      });
      await kube.apply({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "argocd-secret", namespace: NAMESPACE, labels },
        stringData: {
          "admin.password": hash.trim(),
          "admin.passwordMtime": new Date().toISOString().replace(/\.\d+Z$/, "Z"),
          "server.secretkey": randomBytes(32).toString("base64"),
        },
      });
      await kube.apply({
        apiVersion: "v1",
        kind: "Secret",
        metadata: {
          name: "repo-gitops",
          namespace: NAMESPACE,
          labels: { "argocd.argoproj.io/secret-type": "repository" },
        },
        stringData: {
          type: "git",
          url: setup.repoUrl,
          username: setup.gitUsername,
          password: setup.gitToken,
        },
      });
      // The lab's API server is not "in-cluster" for processes outside a pod (no KUBERNETES_SERVICE_HOST, no
      // mounted service account): it is registered the way users add an external cluster, as a cluster secret.
      await kube.apply({
        apiVersion: "v1",
        kind: "Secret",
        metadata: {
          name: "cluster-lab",
          namespace: NAMESPACE,
          labels: { "argocd.argoproj.io/secret-type": "cluster" },
        },
        stringData: {
          name: "lab",
          server: kube.url,
          config: JSON.stringify({
            bearerToken: kube.token,
            tlsClientConfig: { caData: Buffer.from(kube.ca).toString("base64") },
          }),
        },
      });
      await kube.apply(defaultProject([]));

      const home = join(dir, "argocd-home");
      await mkdir(home, { recursive: true });
      const env: NodeJS.ProcessEnv = {
        PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}`,
        HOME: home,
        TMPDIR: home,
        KUBECONFIG: kube.kubeconfig,
        ARGOCD_GPG_ENABLED: "false",
      };
      const [redisPort, repoPort, repoMetrics, controllerMetrics, serverPort, serverMetrics] = [
        await freePort(),
        await freePort(),
        await freePort(),
        await freePort(),
        await freePort(),
        await freePort(),
      ];
      const redis = `127.0.0.1:${redisPort}`;
      const repoServer = `127.0.0.1:${repoPort}`;
      const healthy = (port: number) => async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
      processes.push(
        await LabProcess.start({
          name: "redis",
          command: "/usr/bin/redis-server",
          args: ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
          dir,
          ready: async () => {
            const { stdout } = await run("redis-cli", ["-p", String(redisPort), "ping"]);
            return stdout.trim() === "PONG";
          },
        }),
      );
      processes.push(
        await LabProcess.start({
          name: "argocd-repo-server",
          command: join(bin, "argocd-repo-server"),
          args: [
            "--port",
            String(repoPort),
            "--metrics-port",
            String(repoMetrics),
            "--redis",
            redis,
            "--disable-tls",
          ],
          dir,
          env,
          ready: healthy(repoMetrics),
        }),
      );
      processes.push(
        await LabProcess.start({
          name: "argocd-application-controller",
          command: join(bin, "argocd-application-controller"),
          args: [
            "--namespace",
            NAMESPACE,
            "--repo-server",
            repoServer,
            "--repo-server-plaintext",
            "--redis",
            redis,
            "--metrics-port",
            String(controllerMetrics),
            "--status-processors",
            "4",
            "--operation-processors",
            "4",
          ],
          dir,
          env,
          ready: healthy(controllerMetrics),
        }),
      );
      processes.push(
        await LabProcess.start({
          name: "argocd-server",
          command: join(bin, "argocd-server"),
          args: [
            "--insecure",
            "--namespace",
            NAMESPACE,
            "--port",
            String(serverPort),
            "--metrics-port",
            String(serverMetrics),
            "--repo-server",
            repoServer,
            "--repo-server-plaintext",
            "--redis",
            redis,
            "--staticassets",
            join(dir, "no-ui"),
          ],
          dir,
          env,
          ready: healthy(serverPort),
        }),
      );
      const serverUrl = `http://127.0.0.1:${serverPort}`;
      const session = await fetch(`${serverUrl}/api/v1/session`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "admin", password: ADMIN_PASSWORD }),
      });
      if (!session.ok)
        throw new Error(`argocd-server refused the admin login: ${session.status} ${await session.text()}`);
      const { token } = (await session.json()) as { token: string };
      if (options.notifications) {
        await kube.apply({
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "argocd-notifications-cm", namespace: NAMESPACE, labels },
          data: options.notifications.configMap,
        });
        await kube.apply({
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name: "argocd-notifications-secret", namespace: NAMESPACE, labels },
          stringData: options.notifications.secret ?? {},
        });
        const notificationsMetrics = await freePort();
        processes.push(
          await LabProcess.start({
            name: "argocd-notifications",
            command: join(bin, "argocd-notifications"),
            args: [
              "--namespace",
              NAMESPACE,
              "--argocd-repo-server",
              repoServer,
              "--argocd-repo-server-plaintext",
              "--metrics-port",
              String(notificationsMetrics),
            ],
            dir,
            env,
            ready: async () => (await fetch(`http://127.0.0.1:${notificationsMetrics}/metrics`)).ok,
          }),
        );
      }
      const applications = options.applications ?? APPLICATIONS;
      for (const app of applications) await kube.apply(application(app, setup.repoUrl, kube.url));
      const proxy = await RecordingProxy.start(serverUrl);
      return new ArgoCdLab(kube, proxy, token, serverUrl, processes, applications);
    } catch (error) {
      for (const started of processes.reverse()) await started.stop();
      throw error;
    }
  }

  async stop(): Promise<void> {
    await this.proxy.stop();
    for (const started of [...this.processes].reverse()) await started.stop();
  }
}
