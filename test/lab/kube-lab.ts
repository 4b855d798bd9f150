import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { freePort } from "../support/nats-server.js";
import { LabProcess } from "./lab-process.js";
import { labDir } from "./lab-paths.js";

export interface KubeResponse<T = unknown> {
  status: number;
  body: T;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** Plural resource paths of the kinds the lab writes; anything else is named explicitly by the caller. */
const RESOURCES: Record<string, string> = {
  Namespace: "namespaces",
  ConfigMap: "configmaps",
  Secret: "secrets",
  Service: "services",
  Deployment: "deployments",
  CustomResourceDefinition: "customresourcedefinitions",
  ValidatingAdmissionPolicy: "validatingadmissionpolicies",
  ValidatingAdmissionPolicyBinding: "validatingadmissionpolicybindings",
  Application: "applications",
  AppProject: "appprojects",
  GitRepository: "gitrepositories",
  Kustomization: "kustomizations",
};

function collectionPath(object: KubeObject): string {
  const plural = RESOURCES[object.kind];
  if (!plural) throw new Error(`the lab does not know the resource path of ${object.kind}`);
  const base = object.apiVersion.includes("/") ? `/apis/${object.apiVersion}` : `/api/${object.apiVersion}`;
  return object.metadata.namespace
    ? `${base}/namespaces/${object.metadata.namespace}/${plural}`
    : `${base}/${plural}`;
}

/**
 * A ValidatingAdmissionPolicy and its Deny binding: the API server itself refuses the objects of `resource` in
 * `apiGroup` ("" for the core group) that fail `expression`, with `message`. How the lab makes a commit
 * really fail to apply, with no cluster-side mock.
 */
export function refusalPolicy(options: {
  name: string;
  apiGroup: string;
  resource: string;
  expression: string;
  message: string;
  objectSelector?: Record<string, unknown>;
}): KubeObject[] {
  const { name, apiGroup, resource, expression, message, objectSelector } = options;
  return [
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicy",
      metadata: { name },
      spec: {
        failurePolicy: "Fail",
        matchConstraints: {
          ...(objectSelector ? { objectSelector } : {}),
          resourceRules: [
            {
              apiGroups: [apiGroup],
              apiVersions: ["v1"],
              operations: ["CREATE", "UPDATE"],
              resources: [resource],
            },
          ],
        },
        validations: [{ expression, message }],
      },
    },
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicyBinding",
      metadata: { name },
      spec: { policyName: name, validationActions: ["Deny"] },
    },
  ];
}

/** A deployment that really fails to apply: the API server refuses Deployments whose image says "syncfail". */
export const SYNCFAIL_POLICY: KubeObject[] = refusalPolicy({
  name: "lab-refuse-syncfail-images",
  apiGroup: "apps",
  resource: "deployments",
  expression: "object.spec.template.spec.containers.all(c, !c.image.contains('syncfail'))",
  message: "the lab refuses images tagged syncfail",
});

/**
 * A real Kubernetes control plane without nodes, as controller-runtime's envtest runs one: Debian's etcd and the
 * kube-apiserver built by `npm run lab:build`, on free loopback ports, with a token file and service-account keys.
 */
export class KubeLab {
  private constructor(
    readonly url: string,
    readonly token: string,
    readonly ca: string,
    readonly kubeconfig: string,
    readonly dir: string,
    private readonly processes: LabProcess[],
  ) {}

  static async start(dir: string): Promise<KubeLab> {
    const processes: LabProcess[] = [];
    try {
      const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
      processes.push(
        await LabProcess.start({
          name: "etcd",
          command: "/usr/bin/etcd",
          args: [
            "--data-dir",
            join(dir, "etcd"),
            "--listen-client-urls",
            `http://127.0.0.1:${etcdClient}`,
            "--advertise-client-urls",
            `http://127.0.0.1:${etcdClient}`,
            "--listen-peer-urls",
            `http://127.0.0.1:${etcdPeer}`,
            "--initial-advertise-peer-urls",
            `http://127.0.0.1:${etcdPeer}`,
            "--initial-cluster",
            `default=http://127.0.0.1:${etcdPeer}`,
            "--unsafe-no-fsync",
          ],
          dir,
          env: { ...process.env, ETCD_UNSUPPORTED_ARCH: "" },
          ready: async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok,
        }),
      );
      const token = randomBytes(24).toString("hex");
      await writeFile(join(dir, "tokens.csv"), `${token},lab-admin,lab-admin,"system:masters"\n`);
      const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      await writeFile(join(dir, "sa.pub"), publicKey.export({ type: "spki", format: "pem" }));
      await writeFile(join(dir, "sa.key"), privateKey.export({ type: "pkcs8", format: "pem" }));
      const certDir = join(dir, "certs");
      const url = `https://127.0.0.1:${apiPort}`;
      let ca = "";
      processes.push(
        await LabProcess.start({
          name: "kube-apiserver",
          command: join(labDir(), "bin", "kube-apiserver"),
          args: [
            `--etcd-servers=http://127.0.0.1:${etcdClient}`,
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            `--secure-port=${apiPort}`,
            `--cert-dir=${certDir}`,
            `--token-auth-file=${join(dir, "tokens.csv")}`,
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            `--service-account-key-file=${join(dir, "sa.pub")}`,
            `--service-account-signing-key-file=${join(dir, "sa.key")}`,
            "--service-cluster-ip-range=10.96.0.0/16",
            "--disable-admission-plugins=ServiceAccount",
            "--enable-priority-and-fairness=false",
          ],
          dir,
          readyTimeoutMs: 90_000,
          ready: async () => {
            ca ||= await readFile(join(certDir, "apiserver.crt"), "utf8").catch(() => "");
            if (!ca) return false;
            const answer = await kubeRequest(url, token, ca, "GET", "/readyz");
            return answer.status === 200;
          },
        }),
      );
      const kubeconfig = join(dir, "kubeconfig");
      await writeFile(
        kubeconfig,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          clusters: [
            {
              name: "lab",
              cluster: { server: url, "certificate-authority-data": Buffer.from(ca).toString("base64") },
            },
          ],
          users: [{ name: "lab-admin", user: { token } }],
          contexts: [{ name: "lab", context: { cluster: "lab", user: "lab-admin" } }],
          "current-context": "lab",
        }),
      );
      return new KubeLab(url, token, ca, kubeconfig, dir, processes);
    } catch (error) {
      for (const started of processes.reverse()) await started.stop();
      throw error;
    }
  }

  request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
  ): Promise<KubeResponse<T>> {
    return kubeRequest<T>(this.url, this.token, this.ca, method, path, body, contentType);
  }

  /** Creates the object, or replaces it when it exists (server-side apply would need field managers). */
  async apply(object: KubeObject): Promise<KubeObject> {
    const collection = collectionPath(object);
    const created = await this.request<KubeObject>("POST", collection, object);
    if (created.status === 201 || created.status === 200) return created.body;
    if (created.status !== 409)
      throw new Error(
        `creating ${object.kind}/${object.metadata.name}: ${created.status} ${JSON.stringify(created.body)}`,
      );
    const path = `${collection}/${object.metadata.name}`;
    const current = await this.request<KubeObject>("GET", path);
    const replaced = await this.request<KubeObject>("PUT", path, {
      ...object,
      metadata: { ...object.metadata, resourceVersion: current.body.metadata.resourceVersion },
    });
    if (replaced.status !== 200)
      throw new Error(
        `replacing ${object.kind}/${object.metadata.name}: ${replaced.status} ${JSON.stringify(replaced.body)}`,
      );
    return replaced.body;
  }

  async applyYaml(text: string): Promise<void> {
    for (const document of parseAllDocuments(text)) {
      const object = document.toJS() as KubeObject | null;
      if (object?.kind) await this.apply(object);
    }
  }

  /** Installs every CRD in a directory and waits until the API serves them. */
  async installCrds(directory: string): Promise<void> {
    const names: string[] = [];
    for (const file of (await readdir(directory)).filter((f) => f.endsWith(".yaml"))) {
      const text = await readFile(join(directory, file), "utf8");
      for (const document of parseAllDocuments(text)) {
        const crd = document.toJS() as KubeObject | null;
        if (crd?.kind !== "CustomResourceDefinition") continue;
        await this.apply(crd);
        names.push(crd.metadata.name);
      }
    }
    for (const name of names) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const crd = await this.request<{ status?: { conditions?: Array<{ type: string; status: string }> } }>(
          "GET",
          `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
        );
        if (crd.body.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) break;
        if (Date.now() > deadline) throw new Error(`CRD ${name} not established`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  async stop(): Promise<void> {
    for (const started of [...this.processes].reverse()) await started.stop();
  }
}

function kubeRequest<T>(
  url: string,
  token: string,
  ca: string,
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
): Promise<KubeResponse<T>> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    const req = httpsRequest(
      new URL(path, url),
      {
        method,
        ca,
        headers: {
          authorization: `Bearer ${token}`,
          accept: "application/json",
          ...(payload === undefined
            ? {}
            : { "content-type": contentType, "content-length": Buffer.byteLength(payload) }),
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // plain text (e.g. /readyz answers "ok")
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T });
        });
      },
    );
    req.on("error", reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}
