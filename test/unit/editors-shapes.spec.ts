import { expect } from "chai";
import type { ChangeSpec } from "../../src/config/schema.js";
import { EDITORS, editFile } from "../../src/gitops-repo/editors/editors.js";
import { parseImageReference } from "../../src/gitops-repo/image-reference.js";
import { TerminalError } from "../../src/shared/errors.js";

const DIGEST_A = `sha256:${"a".repeat(64)}`;
const DIGEST_B = `sha256:${"b".repeat(64)}`;

/** Edits `before` as a deployment of `image` (and `values`) would, and returns the whole new file. */
function edit(before: string, change: ChangeSpec, image?: string, values: Record<string, unknown> = {}) {
  return editFile(before, "file.yaml", change, {
    image: image ? parseImageReference(image) : undefined,
    values: image ? { image, ...values } : values,
  });
}

describe("EDITORS", () => {
  it("has one entry per change kind, and only values-merge works without an image", () => {
    expect(Object.keys(EDITORS)).to.have.members([
      "helm-values",
      "manifest-image",
      "kustomize-images",
      "helmrelease-values",
      "argocd-application",
      "values-merge",
    ]);
    const withoutImage = Object.entries(EDITORS).filter(([, entry]) => !entry.needsImage);
    expect(withoutImage.map(([kind]) => kind)).to.deep.equal(["values-merge"]);
  });
});

describe("helm-values: registry and digest", () => {
  const before = `# carts in dev
image:
  registry: docker.io   # where from
  repository: 'keptnexamples/carts'
  tag: "0.13.1"
  digest: ""
  pullPolicy: IfNotPresent
`;

  it("splits registry, repository, tag and digest into four keys", () => {
    const result = edit(
      before,
      {
        kind: "helm-values",
        registry: "image.registry",
        repository: "image.repository",
        tag: "image.tag",
        digest: "image.digest",
      },
      `ghcr.io/team/carts:0.14.0@${DIGEST_A}`,
    );
    expect(result.text).to.equal(`# carts in dev
image:
  registry: ghcr.io   # where from
  repository: 'team/carts'
  tag: "0.14.0"
  digest: "${DIGEST_A}"
  pullPolicy: IfNotPresent
`);
    expect(result.changes).to.deep.equal([
      "image.registry: docker.io -> ghcr.io",
      "image.repository: keptnexamples/carts -> team/carts",
      "image.tag: 0.13.1 -> 0.14.0",
      `image.digest:  -> ${DIGEST_A}`,
    ]);
  });

  it("takes docker.io as the registry of an image without one, and clears an old digest", () => {
    const pinned = before.replace('digest: ""', `digest: ${DIGEST_B}`);
    const result = edit(
      pinned,
      {
        kind: "helm-values",
        registry: "image.registry",
        repository: "image.repository",
        tag: "image.tag",
        digest: "image.digest",
      },
      "keptnexamples/carts:0.13.2",
    );
    expect(result.text).to.equal(before.replace("0.13.1", "0.13.2"));
  });

  it("writes a digest-only image without touching the tag", () => {
    const result = edit(
      before,
      { kind: "helm-values", tag: "image.tag", digest: "image.digest" },
      `org/carts@${DIGEST_A}`,
    );
    expect(result.text).to.equal(before.replace('digest: ""', `digest: "${DIGEST_A}"`));
  });

  it("makes no change when every key already holds its part", () => {
    const result = edit(
      before,
      { kind: "helm-values", registry: "image.registry", repository: "image.repository", tag: "image.tag" },
      "docker.io/keptnexamples/carts:0.13.1",
    );
    expect(result).to.deep.equal({ text: before, changes: [] });
  });

  it("says when a key path runs through a list or a single value", () => {
    const text = "image:\n  tags:\n    - 1.0\n  tag: 1.0\n";
    expect(() => edit(text, { kind: "helm-values", tag: "image.tags.latest" }, "a/b:2")).to.throw(
      TerminalError,
      'file.yaml: image.tags is a list, so the key path image.tags.latest cannot go on with "latest"',
    );
    expect(() => edit(text, { kind: "helm-values", tag: "image.tag.value" }, "a/b:2")).to.throw(
      TerminalError,
      "file.yaml: image.tag is a single value, so the key path image.tag.value cannot go through it",
    );
  });
});

describe("kustomize-images", () => {
  const before = `# overlay for dev
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../base   # shared
images:
- name: docker.io/org/carts  # the app
  newTag: "0.1.0"
- name: nginx
  newName: 'registry.local/nginx'
  newTag: 1.25
  digest: ${DIGEST_A}
`;

  it("sets newTag of the entry named like the image's repository, nothing else", () => {
    const result = edit(before, { kind: "kustomize-images" }, "docker.io/org/carts:0.2.0");
    expect(result.text).to.equal(before.replace('newTag: "0.1.0"', 'newTag: "0.2.0"'));
    expect(result.changes).to.deep.equal(["images[docker.io/org/carts].newTag: 0.1.0 -> 0.2.0"]);
  });

  it("matches a configured name, keeps newName, and drops a digest the image no longer has", () => {
    const result = edit(before, { kind: "kustomize-images", name: "nginx" }, "registry.local/nginx:1.27");
    expect(result.text).to.equal(`# overlay for dev
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../base   # shared
images:
- name: docker.io/org/carts  # the app
  newTag: "0.1.0"
- name: nginx
  newName: 'registry.local/nginx'
  newTag: "1.27"
`);
    expect(result.changes).to.deep.equal([
      "images[nginx].newTag: 1.25 -> 1.27",
      `images[nginx].digest: ${DIGEST_A} -> (removed)`,
    ]);
  });

  it("pins by digest: digest added, the old newTag removed", () => {
    const result = edit(before, { kind: "kustomize-images" }, `docker.io/org/carts@${DIGEST_B}`);
    expect(result.text).to.equal(before.replace('  newTag: "0.1.0"\n', `  digest: ${DIGEST_B}\n`));
  });

  it("adds a missing entry at the end of images, with newName when the name differs", () => {
    const result = edit(before, { kind: "kustomize-images", name: "orders" }, "docker.io/org/orders:1.10");
    expect(result.text).to.equal(`${before}- name: orders
  newName: docker.io/org/orders
  newTag: "1.10"
`);
  });

  it("adds images: when the file has none, in the file's list style", () => {
    const text = "resources:\n  - base # app\n";
    const result = edit(text, { kind: "kustomize-images" }, "docker.io/org/orders:1.10");
    expect(result.text).to.equal(`resources:
  - base # app
images:
  - name: docker.io/org/orders
    newTag: "1.10"
`);
  });

  it("fills an empty images: [] and keeps its comment on the key", () => {
    const result = edit("images: []  # none yet\n", { kind: "kustomize-images" }, "org/app:2");
    expect(result.text).to.equal('images:  # none yet\n  - name: org/app\n    newTag: "2"\n');
  });

  it("makes no change when the entry is up to date", () => {
    const result = edit(before, { kind: "kustomize-images" }, "docker.io/org/carts:0.1.0");
    expect(result).to.deep.equal({ text: before, changes: [] });
  });

  it("refuses what is not a kustomization.yaml", () => {
    expect(() => edit("kind: Deployment\n", { kind: "kustomize-images" }, "a/b:1")).to.throw(
      TerminalError,
      "file.yaml is not a kustomization.yaml (kind: Deployment)",
    );
    const flux = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n";
    expect(() => edit(flux, { kind: "kustomize-images" }, "a/b:1")).to.throw(
      TerminalError,
      "file.yaml is a Flux Kustomization, not a kustomization.yaml",
    );
    expect(() => edit("images: [\n", { kind: "kustomize-images" }, "a/b:1")).to.throw(
      TerminalError,
      /file.yaml is not valid YAML \(line \d+\)/,
    );
  });

  it("refuses to add to a flow list, and an image without tag or digest", () => {
    expect(() =>
      edit("images: [{ name: x, newTag: '1' }]\n", { kind: "kustomize-images" }, "a/b:1"),
    ).to.throw(TerminalError, "file.yaml: images is written in flow style");
    expect(() => edit(before, { kind: "kustomize-images" }, "docker.io/org/carts")).to.throw(
      TerminalError,
      "has neither a tag nor a digest",
    );
  });
});

describe("manifest-image: every workload kind", () => {
  const before = `# workloads of orders
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: orders-db
spec:
  template:
    spec:
      containers:
        - name: db
          image: "docker.io/library/postgres:16.1"   # pinned by hand
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: orders-agent
spec:
  template:
    spec:
      initContainers:
        - name: setup
          image: docker.io/org/orders:0.1.0
      containers:
        - name: agent
          image: 'docker.io/org/orders:0.1.0'
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: orders-report
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: report
              image: docker.io/org/orders:0.1.0 # same image
          restartPolicy: OnFailure
...
`;

  it("changes every container running the repository, CronJob and initContainers included", () => {
    const result = edit(before, { kind: "manifest-image" }, "docker.io/org/orders:0.2.0");
    expect(result.text).to.equal(before.replaceAll("orders:0.1.0", "orders:0.2.0"));
    expect(result.changes).to.deep.equal([
      "DaemonSet/orders-agent container setup: docker.io/org/orders:0.1.0 -> docker.io/org/orders:0.2.0",
      "DaemonSet/orders-agent container agent: docker.io/org/orders:0.1.0 -> docker.io/org/orders:0.2.0",
      "CronJob/orders-report container report: docker.io/org/orders:0.1.0 -> docker.io/org/orders:0.2.0",
    ]);
  });

  it("changes a named container of a StatefulSet only, keeping its quotes and comment", () => {
    const result = edit(
      before,
      { kind: "manifest-image", container: "db" },
      "docker.io/library/postgres:16.2",
    );
    expect(result.text).to.equal(before.replace("postgres:16.1", "postgres:16.2"));
  });

  it("changes the CronJob's container by name", () => {
    const result = edit(
      before,
      { kind: "manifest-image", container: "report" },
      "docker.io/org/orders:0.3.0",
    );
    expect(result.text).to.equal(before.replace("orders:0.1.0 # same image", "orders:0.3.0 # same image"));
  });
});

describe("helmrelease-values", () => {
  const before = `---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: charts
spec:
  url: https://charts.example.com
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: carts
spec:
  chart:
    spec:
      chart: carts
      version: "1.x"   # any 1.x
  values:
    image:
      repository: docker.io/org/carts
      tag: '0.1.0' # keptn writes this
    replicaCount: 2
`;

  it("sets key paths below spec.values of the HelmRelease in a multi-document file", () => {
    const result = edit(
      before,
      { kind: "helmrelease-values", repository: "image.repository", tag: "image.tag" },
      "ghcr.io/org/carts:0.2.0",
    );
    expect(result.text).to.equal(
      before.replace("docker.io/org/carts", "ghcr.io/org/carts").replace("'0.1.0'", "'0.2.0'"),
    );
    expect(result.changes).to.deep.equal([
      "spec.values.image.repository: docker.io/org/carts -> ghcr.io/org/carts",
      "spec.values.image.tag: 0.1.0 -> 0.2.0",
    ]);
  });

  it("picks the HelmRelease by name when the file holds several", () => {
    const two = `${before}---\n${before.split("---\n")[2]!.replace("name: carts", "name: orders")}`;
    expect(() => edit(two, { kind: "helmrelease-values", tag: "image.tag" }, "a/b:1")).to.throw(
      TerminalError,
      "file.yaml holds 2 of kind HelmRelease (HelmRelease/carts, HelmRelease/orders); set change.name to choose one",
    );
    const result = edit(two, { kind: "helmrelease-values", name: "orders", tag: "image.tag" }, "a/b:0.9.0");
    expect(result.changes).to.deep.equal(["spec.values.image.tag: 0.1.0 -> 0.9.0"]);
    expect(result.text.startsWith(before)).to.equal(true);
  });

  it("names the HelmRelease and the missing key, and refuses a file without a HelmRelease", () => {
    expect(() => edit(before, { kind: "helmrelease-values", tag: "image.version" }, "a/b:1")).to.throw(
      TerminalError,
      "file.yaml (HelmRelease/carts) has no key spec.values.image.version",
    );
    expect(() =>
      edit("kind: Kustomization\nmetadata: { name: x }\n", { kind: "helmrelease-values", tag: "t" }, "a/b:1"),
    ).to.throw(
      TerminalError,
      "file.yaml has no HelmRelease (found: Kustomization/x); point the target's file at it",
    );
  });
});

describe("argocd-application", () => {
  const single = `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: carts-dev
  namespace: argocd
spec:
  project: default
  source:
    repoURL: https://charts.example.com
    chart: carts
    targetRevision: 1.0.0
    helm:
      valuesObject:
        image:
          tag: "0.1.0"   # keptn
  destination:
    namespace: dev
`;
  const multi = `apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: carts-dev
spec:
  sources:
    - repoURL: https://charts.example.com
      chart: carts
      targetRevision: 1.0.0
      helm:
        parameters:
          - name: replicaCount
            value: "2"
          - name: image.tag # set by keptn
            value: 0.1.0
    - repoURL: https://git.example.com/org/gitops.git
      name: values
      ref: values
`;

  it("sets spec.source.helm.valuesObject by key path", () => {
    const result = edit(single, { kind: "argocd-application", tag: "image.tag" }, "org/carts:0.2.0");
    expect(result.text).to.equal(single.replace('"0.1.0"', '"0.2.0"'));
    expect(result.changes).to.deep.equal(["spec.source.helm.valuesObject.image.tag: 0.1.0 -> 0.2.0"]);
  });

  it("sets a parameter of the source chosen by repoURL, and adds the missing one", () => {
    const result = edit(
      multi,
      {
        kind: "argocd-application",
        source: { repoURL: "https://charts.example.com/" },
        into: "parameters",
        repository: "image.repository",
        tag: "image.tag",
      },
      "org/carts:1.10",
    );
    expect(result.text).to.equal(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: carts-dev
spec:
  sources:
    - repoURL: https://charts.example.com
      chart: carts
      targetRevision: 1.0.0
      helm:
        parameters:
          - name: replicaCount
            value: "2"
          - name: image.tag # set by keptn
            value: "1.10"
          - name: image.repository
            value: org/carts
    - repoURL: https://git.example.com/org/gitops.git
      name: values
      ref: values
`);
    expect(result.changes).to.deep.equal([
      "spec.sources.0.helm.parameters image.tag: 0.1.0 -> 1.10",
      "spec.sources.0.helm.parameters image.repository: (none) -> org/carts",
    ]);
  });

  it("adds helm.parameters to a source without helm", () => {
    const result = edit(
      single.replace(/ {4}helm:\n.*\n.*\n.*\n/, ""),
      { kind: "argocd-application", into: "parameters", tag: "image.tag" },
      "org/carts:0.2.0",
    );
    expect(result.text).to.equal(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: carts-dev
  namespace: argocd
spec:
  project: default
  source:
    repoURL: https://charts.example.com
    chart: carts
    targetRevision: 1.0.0
    helm:
      parameters:
        - name: image.tag
          value: 0.2.0
  destination:
    namespace: dev
`);
  });

  it("needs change.source for a multi-source app and says which sources there are", () => {
    expect(() =>
      edit(multi, { kind: "argocd-application", into: "parameters", tag: "image.tag" }, "a/b:1"),
    ).to.throw(
      TerminalError,
      "file.yaml (Application/carts-dev) has 2 sources (https://charts.example.com, values (https://git.example.com/org/gitops.git)); set change.source.repoURL or change.source.name",
    );
    expect(() =>
      edit(multi, { kind: "argocd-application", source: { name: "chart" }, tag: "image.tag" }, "a/b:1"),
    ).to.throw(TerminalError, "has no source with name chart");
    expect(() =>
      edit(multi, { kind: "argocd-application", source: { name: "values" }, tag: "image.tag" }, "a/b:1"),
    ).to.throw(TerminalError, "has no key spec.sources.1.helm.valuesObject.image.tag");
  });

  it("refuses a file without an Application", () => {
    expect(() =>
      edit(
        "kind: ApplicationSet\nmetadata:\n  name: all\n",
        { kind: "argocd-application", tag: "t" },
        "a/b:1",
      ),
    ).to.throw(TerminalError, "file.yaml has no Application (found: ApplicationSet/all)");
  });
});

describe("values-merge", () => {
  const before = `# values for carts
replicaCount: 1
image:
  repository: docker.io/org/carts
  tag: "0.1.0"
resources:
  limits:
    cpu: 100m   # measured
env:
  - name: A
    value: "1"
`;

  it("merges maps, replaces scalars and lists, adds missing keys, leaves image out", () => {
    const result = edit(before, { kind: "values-merge" }, "docker.io/org/carts:0.2.0", {
      replicaCount: 3,
      resources: { limits: { memory: "128Mi" }, requests: { cpu: "50m" } },
      env: [{ name: "B", value: "2" }],
      feature: { enabled: true, ratio: "1.10" },
    });
    expect(result.text).to.equal(`# values for carts
replicaCount: 3
image:
  repository: docker.io/org/carts
  tag: "0.1.0"
resources:
  limits:
    cpu: 100m   # measured
    memory: 128Mi
  requests:
    cpu: 50m
env:
  - name: B
    value: "2"
feature:
  enabled: true
  ratio: "1.10"
`);
    expect(result.changes).to.deep.equal([
      "replicaCount: 1 -> 3",
      "resources.limits.memory: (none) -> 128Mi",
      'resources.requests: (none) -> {"cpu":"50m"}',
      'env: [{"name":"A","value":"1"}] -> [{"name":"B","value":"2"}]',
      'feature: (none) -> {"enabled":true,"ratio":"1.10"}',
    ]);
  });

  it("works without an image, keeps quoting of a changed string, and no change means no edit", () => {
    const result = editFile(
      before,
      "file.yaml",
      { kind: "values-merge" },
      { values: { image: { tag: "0.5.0" } } },
    );
    expect(result.text).to.equal(before); // image is left out by default
    const kept = editFile(
      before,
      "file.yaml",
      { kind: "values-merge", keepImage: true },
      { values: { image: { tag: "0.5.0" } } },
    );
    expect(kept.text).to.equal(before.replace('"0.1.0"', '"0.5.0"'));
    const same = editFile(before, "file.yaml", { kind: "values-merge" }, { values: { replicaCount: 1 } });
    expect(same).to.deep.equal({ text: before, changes: [] });
  });

  it("replaces a map by a scalar and the other way round", () => {
    const result = editFile(
      before,
      "file.yaml",
      { kind: "values-merge" },
      { values: { resources: null, replicaCount: { min: 1 } } },
    );
    expect(result.text).to.equal(`# values for carts
replicaCount:
  min: 1
image:
  repository: docker.io/org/carts
  tag: "0.1.0"
resources: null
env:
  - name: A
    value: "1"
`);
  });

  it("refuses a file that is not a map, and adding to a flow map", () => {
    expect(() => editFile("- a\n", "file.yaml", { kind: "values-merge" }, { values: { a: 1 } })).to.throw(
      TerminalError,
      "file.yaml is not a map of values at the top level",
    );
    expect(() =>
      editFile(
        "limits: { cpu: 1 }\n",
        "file.yaml",
        { kind: "values-merge" },
        { values: { limits: { memory: "1Gi" } } },
      ),
    ).to.throw(TerminalError, "file.yaml: limits is written in flow style");
  });
});
