import { expect } from "chai";
import { ConfigError, loadConfig } from "../../src/config/load-config.js";

/** A valid file whose first target has the given `change`. */
function configWith(change: string): string {
  return `
repositories:
  - name: gitops
    url: https://git.example.com/org/gitops.git
argocd:
  servers:
    - name: main
      url: https://argocd.example.com
      token: { fromEnv: ARGOCD_TOKEN }
targets:
  - repository: gitops
    file: "apps/{service}.yaml"
    change: ${change}
    deploy: { tool: argocd, server: main }
`;
}

function load(change: string) {
  return loadConfig({ text: configWith(change), source: "config.yaml", env: { ARGOCD_TOKEN: "t" } });
}

function problemsOf(change: string): string[] {
  try {
    load(change);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("configuration: change kinds", () => {
  it("accepts each kind with its keys", () => {
    const changes = [
      "{ kind: helm-values, registry: image.registry, repository: image.repository, tag: image.tag, digest: image.digest }",
      "{ kind: manifest-image, container: app }",
      "{ kind: kustomize-images }",
      "{ kind: kustomize-images, name: carts }",
      "{ kind: helmrelease-values, name: carts, tag: image.tag }",
      "{ kind: argocd-application, tag: image.tag }",
      "{ kind: argocd-application, source: { repoURL: https://charts.example.com }, into: parameters, tag: image.tag }",
      "{ kind: values-merge }",
      "{ kind: values-merge, keepImage: true }",
    ];
    for (const change of changes) expect(problemsOf(change), change).to.deep.equal([]);
    expect(load("{ kind: helm-values, digest: image.digest }").targets[0]?.change).to.deep.equal({
      kind: "helm-values",
      digest: "image.digest",
    });
  });

  it("says what to fix", () => {
    const cases: Array<[string, string]> = [
      [
        "{ kind: helm-chart }",
        "targets.0.change.kind: change.kind is one of helm-values, manifest-image, kustomize-images, helmrelease-values, argocd-application, values-merge",
      ],
      [
        "{ kind: helm-values, registry: image.registry, tag: image.tag }",
        "targets.0.change.registry: `registry` gets the registry split out of the repository: give `repository` too",
      ],
      [
        "{ kind: helm-values, tag: image..tag }",
        "targets.0.change.tag: write a key path as keys joined by dots, e.g. image.tag",
      ],
      [
        "{ kind: helmrelease-values, repository: image.repository }",
        "targets.0.change: name where the image goes: `tag` (with `repository` if wanted) or `reference`",
      ],
      [
        "{ kind: argocd-application, source: {}, tag: image.tag }",
        "targets.0.change.source: choose the source by repoURL or by name",
      ],
      [
        "{ kind: argocd-application, into: params, tag: image.tag }",
        'targets.0.change.into: change.into is "valuesObject" or "parameters"',
      ],
      ["{ kind: kustomize-images, newTag: x }", "targets.0.change"],
      [
        "{ kind: values-merge, keepImage: yes please }",
        "targets.0.change.keepImage: keepImage is true or false",
      ],
    ];
    for (const [change, problem] of cases) {
      const problems = problemsOf(change);
      expect(
        problems.some((p) => p.startsWith(problem)),
        `${change}: ${problems.join("; ")}`,
      ).to.equal(true);
    }
  });
});
