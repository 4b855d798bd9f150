/**
 * The pinned upstream components of the test lab (`npm run lab:build`). Only these pins and the build script
 * live here; the sources come from the Go module proxy at build time.
 */
export interface GoComponent {
  name: string;
  /** The Go module that holds the command. */
  module: string;
  version: string;
  /** The `main` package to build. */
  pkg: string;
  /**
   * Version for modules the upstream go.mod requires as v0.0.0 and replaces with a directory of its own
   * repository (Kubernetes' staging modules): they are taken from the proxy at this version instead.
   */
  stagingVersion?: string;
  /** Directory of CustomResourceDefinitions inside the module, copied to `<lab>/crds/<name>/`. */
  crds?: string;
  /** Other names of the same binary (Argo CD picks its component from argv[0]). */
  aliases?: string[];
  /**
   * Module versions the Go module proxy of this workplace refuses (403 "This module version is not available"),
   * replaced by the nearest version it serves: `path => path version`.
   */
  extraReplaces?: string[];
  /** The lab cannot run without it. */
  required: boolean;
}

export const GO_COMPONENTS: GoComponent[] = [
  {
    name: "kube-apiserver",
    module: "k8s.io/kubernetes",
    version: "v1.35.4",
    pkg: "k8s.io/kubernetes/cmd/kube-apiserver",
    stagingVersion: "v0.35.4",
    required: true,
  },
  {
    name: "source-controller",
    module: "github.com/fluxcd/source-controller",
    version: "v1.9.6",
    pkg: "github.com/fluxcd/source-controller",
    crds: "config/crd/bases",
    // v0.18.2 and v0.18.3: 403 from the proxy.
    extraReplaces: ["github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.1"],
    required: true,
  },
  {
    name: "kustomize-controller",
    module: "github.com/fluxcd/kustomize-controller",
    version: "v1.9.6",
    pkg: "github.com/fluxcd/kustomize-controller",
    crds: "config/crd/bases",
    required: true,
  },
  {
    name: "notification-controller",
    module: "github.com/fluxcd/notification-controller",
    version: "v1.9.3",
    pkg: "github.com/fluxcd/notification-controller",
    crds: "config/crd/bases",
    required: false,
  },
  {
    // Flux 2.9's helm-controller (v1.6.x) needs github.com/fluxcd/helm/v4@v4.2.4-flux.1, whose zip the proxy
    // refuses (403); v1.5.x and v1.4.4-5 are refused too. v1.4.3 (Flux 2.7, helm.sh/helm/v3 v3.19.0) is served.
    name: "helm-controller",
    module: "github.com/fluxcd/helm-controller",
    version: "v1.4.3",
    pkg: "github.com/fluxcd/helm-controller",
    crds: "config/crd/bases",
    required: false,
  },
  {
    // Argo CD's repo-server renders Helm charts with the helm command.
    name: "helm",
    module: "helm.sh/helm/v3",
    version: "v3.22.0",
    pkg: "helm.sh/helm/v3/cmd/helm",
    required: true,
  },
  {
    // v3.3 and later keep gitops-engine inside the argo-cd repository (a `./gitops-engine` replace); v3.2 is the
    // newest line whose module builds from the proxy alone. v3.2.12 does not compile as published
    // (controller/cache/info.go calls settings.ValidateExternalURL, which no file of that version defines).
    name: "argocd",
    module: "github.com/argoproj/argo-cd/v3",
    version: "v3.2.11",
    pkg: "github.com/argoproj/argo-cd/v3/cmd",
    crds: "manifests/crds",
    aliases: ["argocd-server", "argocd-application-controller", "argocd-repo-server", "argocd-notifications"],
    required: true,
  },
];

/** Debian packages the lab runs as they are. */
export const DEBIAN_PACKAGES = [
  { name: "etcd", pkg: "etcd-server", binary: "/usr/bin/etcd" },
  { name: "redis", pkg: "redis-server", binary: "/usr/bin/redis-server" },
];
