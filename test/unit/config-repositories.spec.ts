import { expect } from "chai";
import type { ConfigError } from "../../src/config/load-config.js";
import { loadConfig } from "../../src/config/load-config.js";

describe("configuration of signed commits", () => {
  const config = (format: string) => `
repositories:
  - name: gitops
    url: "https://git.example.com/gitops.git"
    signing: { format: ${format}, key: { fromEnv: SIGNING_KEY } }
argocd: { servers: [{ name: main, url: "https://argocd.example.com", token: { fromEnv: T } }] }
targets:
  - repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: main }
`;
  const problems = (format: string, key: string) => {
    try {
      loadConfig({
        text: config(format),
        source: "config.yaml",
        env: { T: "argo-token-123", SIGNING_KEY: key },
      });
      return [];
    } catch (error) {
      return (error as ConfigError).problems;
    }
  };

  it("reads the key of either format, and says what a key of the wrong kind should be", () => {
    const sshKey =
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
    expect(problems("ssh", sshKey)).to.deep.equal([]);
    expect(problems("openpgp", sshKey)).to.deep.equal([
      "repositories.0.signing.key: the secret is not an armored OpenPGP secret key (gpg --armor --export-secret-keys)",
    ]);
    expect(problems("ssh", "just-a-token-value")).to.deep.equal([
      "repositories.0.signing.key: the secret is not an SSH private key file",
    ]);
    expect(problems("x509", sshKey).join("\n")).to.include('signing.format is "ssh" or "openpgp"');
  });
});

describe("configuration of HTTPS token schemes", () => {
  const config = (auth: string) => `
repositories:
  - name: gitops
    url: "https://git.example.com/gitops.git"
    auth: ${auth}
argocd: { servers: [{ name: main, url: "https://argocd.example.com", token: { fromEnv: T } }] }
targets:
  - repository: gitops
    file: "charts/{service}/values-{stage}.yaml"
    change: { kind: helm-values, tag: image.tag }
    deploy: { tool: argocd, server: main }
`;
  const load = (auth: string) =>
    loadConfig({
      text: config(auth),
      source: "config.yaml",
      env: { T: "argo-token-123", GIT: "git-token-456" },
    });

  it("sends the token as HTTP Basic unless told bearer", () => {
    expect(load("{ token: { fromEnv: GIT } }").repositories[0]?.auth).to.deep.equal({
      username: "x-access-token",
      token: "git-token-456",
      scheme: "basic",
    });
    expect(load("{ token: { fromEnv: GIT }, scheme: bearer }").repositories[0]?.auth).to.include({
      scheme: "bearer",
    });
  });

  it("refuses a user name with a bearer token", () => {
    expect(() => load("{ token: { fromEnv: GIT }, scheme: bearer, username: me }")).to.throw(
      "repositories.0.auth.username: a bearer token is sent without a user name; remove auth.username",
    );
  });
});
