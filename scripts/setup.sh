#!/usr/bin/env bash
# Installs what a fresh machine lacks for keptn-gitops-service: git, nats-server, openssh-server and gnupg from Debian
# when missing, then the npm dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
{ [ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1; } || missing+=(nats-server)
# sshd serves the test GitOps repository over SSH (test/support/ssh-git-server.ts); ssh and ssh-keygen come with it.
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
# gpg signs and verifies the OpenPGP-signed commits of test/e2e/commit-signing.spec.ts.
command -v gpg >/dev/null 2>&1 || missing+=(gnupg)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} with apt-get"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
