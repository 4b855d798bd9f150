import { expect } from "chai";
import type { ChangeSpec } from "../../src/config/schema.js";
import { editFile } from "../../src/gitops-repo/editors/editors.js";
import { parseImageReference, type ImageReference } from "../../src/gitops-repo/image-reference.js";
import { TerminalError } from "../../src/shared/errors.js";

const VALUES = `# Values for carts in dev
replicaCount: 1
image:
  repository: docker.io/keptnexamples/carts  # the registry path
  tag: "0.13.1"   # bumped by Keptn
  pullPolicy: IfNotPresent
service:
  port: 8080
`;

/** These cases edit with an image only, as a deployment whose configurationChange.values hold just the image. */
const editWithImage = (text: string, file: string, change: ChangeSpec, image: ImageReference) =>
  editFile(text, file, change, { image, values: {} });

describe("helm-values editor", () => {
  it("changes only the tag, keeping comments, quotes and order", () => {
    const image = parseImageReference("docker.io/keptnexamples/carts:0.13.3");
    const result = editWithImage(VALUES, "values.yaml", { kind: "helm-values", tag: "image.tag" }, image);
    expect(result.text).to.equal(VALUES.replace('"0.13.1"', '"0.13.3"'));
    expect(result.changes).to.deep.equal(["image.tag: 0.13.1 -> 0.13.3"]);
  });

  it("splits repository and tag into two keys", () => {
    const image = parseImageReference("registry.example.com:5000/team/carts:1.0.0");
    const result = editWithImage(
      VALUES,
      "values.yaml",
      { kind: "helm-values", repository: "image.repository", tag: "image.tag" },
      image,
    );
    expect(result.text).to.equal(
      VALUES.replace("docker.io/keptnexamples/carts  #", "registry.example.com:5000/team/carts  #").replace(
        '"0.13.1"',
        '"1.0.0"',
      ),
    );
  });

  it("writes the whole reference into one key", () => {
    const text = "app:\n  image: 'docker.io/org/app:1.0' # pinned\n";
    const image = parseImageReference("docker.io/org/app:2.0");
    const result = editWithImage(text, "v.yaml", { kind: "helm-values", reference: "app.image" }, image);
    expect(result.text).to.equal("app:\n  image: 'docker.io/org/app:2.0' # pinned\n");
  });

  it("quotes a plain value that would otherwise read back as a number", () => {
    const text = "image:\n  tag: latest\n";
    const result = editWithImage(
      text,
      "v.yaml",
      { kind: "helm-values", tag: "image.tag" },
      parseImageReference("org/app:1.10"),
    );
    expect(result.text).to.equal('image:\n  tag: "1.10"\n');
  });

  it("reports no change when the value is already there", () => {
    const result = editWithImage(
      VALUES,
      "values.yaml",
      { kind: "helm-values", tag: "image.tag" },
      parseImageReference("x/carts:0.13.1"),
    );
    expect(result.changes).to.deep.equal([]);
    expect(result.text).to.equal(VALUES);
  });

  it("names the missing key and the file", () => {
    expect(() =>
      editWithImage(
        VALUES,
        "charts/carts/values-dev.yaml",
        { kind: "helm-values", tag: "image.version" },
        parseImageReference("a/b:1"),
      ),
    ).to.throw(TerminalError, "charts/carts/values-dev.yaml has no key image.version");
  });

  it("refuses unparsable YAML with the line number", () => {
    expect(() =>
      editWithImage(
        "image:\n  tag: [1, 2\n",
        "bad.yaml",
        { kind: "helm-values", tag: "image.tag" },
        parseImageReference("a/b:1"),
      ),
    ).to.throw(TerminalError, /bad.yaml is not valid YAML \(line \d+\)/);
  });

  it("refuses a digest-pinned image when only the tag is written", () => {
    const image = parseImageReference(`docker.io/org/app:2@sha256:${"b".repeat(64)}`);
    expect(() => editWithImage(VALUES, "v.yaml", { kind: "helm-values", tag: "image.tag" }, image)).to.throw(
      TerminalError,
      "is pinned by digest, but the target writes only the tag to image.tag",
    );
  });

  it("names the file and key of a value it does not rewrite", () => {
    const text = "image:\n  tag: |\n    1.0\n";
    expect(() =>
      editWithImage(text, "v.yaml", { kind: "helm-values", tag: "image.tag" }, parseImageReference("a/b:2")),
    ).to.throw(
      TerminalError,
      "v.yaml: image.tag is a BLOCK_LITERAL value, which the service does not rewrite",
    );
  });

  it("refuses an image without a tag when a tag key is configured", () => {
    expect(() =>
      editWithImage(
        VALUES,
        "v.yaml",
        { kind: "helm-values", tag: "image.tag" },
        parseImageReference("docker.io/org/app"),
      ),
    ).to.throw(TerminalError, "has no tag");
  });
});

const MULTI = `# orders in production
apiVersion: v1
kind: Service
metadata:
  name: orders
spec:
  ports:
    - port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
spec:
  template:
    spec:
      containers:
        - name: orders
          image: docker.io/keptnexamples/orders:0.13.1 # app
        - name: envoy
          image: envoyproxy/envoy:v1.29.0
`;

describe("manifest-image editor", () => {
  it("sets the image of the named container in a multi-document file, nothing else", () => {
    const image = parseImageReference("docker.io/keptnexamples/orders:0.13.2");
    const result = editWithImage(MULTI, "m.yaml", { kind: "manifest-image", container: "orders" }, image);
    expect(result.text).to.equal(MULTI.replace("orders:0.13.1", "orders:0.13.2"));
    expect(result.changes).to.deep.equal([
      "Deployment/orders container orders: docker.io/keptnexamples/orders:0.13.1 -> docker.io/keptnexamples/orders:0.13.2",
    ]);
  });

  it("without a container name, changes every container running the same repository", () => {
    const result = editWithImage(
      MULTI,
      "m.yaml",
      { kind: "manifest-image" },
      parseImageReference("envoyproxy/envoy:v1.30.0"),
    );
    expect(result.text).to.equal(MULTI.replace("envoy:v1.29.0", "envoy:v1.30.0"));
  });

  it("says which containers it found when none matches", () => {
    expect(() =>
      editWithImage(
        MULTI,
        "m.yaml",
        { kind: "manifest-image", container: "web" },
        parseImageReference("a/b:1"),
      ),
    ).to.throw(
      TerminalError,
      "m.yaml has no container named web (found: orders (docker.io/keptnexamples/orders:0.13.1), envoy (envoyproxy/envoy:v1.29.0))",
    );
  });
});

describe("image references", () => {
  it("tells a registry port from a tag", () => {
    expect(parseImageReference("localhost:5000/app")).to.deep.equal({
      reference: "localhost:5000/app",
      repository: "localhost:5000/app",
    });
    expect(parseImageReference("localhost:5000/app:1.2")).to.include({
      repository: "localhost:5000/app",
      tag: "1.2",
    });
  });

  it("keeps a digest", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    expect(parseImageReference(`org/app:1.0@${digest}`)).to.include({
      repository: "org/app",
      tag: "1.0",
      digest,
    });
  });

  it("refuses what is not an image", () => {
    expect(() => parseImageReference("Not An Image")).to.throw(
      TerminalError,
      "is not a valid image reference",
    );
  });
});
