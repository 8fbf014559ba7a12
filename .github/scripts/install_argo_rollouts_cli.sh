#!/usr/bin/env bash
# Install the `kubectl argo rollouts` plugin of an Argo Rollouts release into /usr/local/bin,
# checked against the release's own argo-rollouts-checksums.txt.
# Usage: install_argo_rollouts_cli.sh v1.9.1
set -euo pipefail
version="${1:?usage: $0 vX.Y.Z}"
if [[ ! "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  echo "not a release tag: $version" >&2
  exit 1
fi
asset="kubectl-argo-rollouts-linux-amd64"
base="https://github.com/argoproj/argo-rollouts/releases/download/$version"
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
cd "$workdir"
curl --fail --silent --show-error --location --retry 3 -o "$asset" "$base/$asset"
curl --fail --silent --show-error --location --retry 3 -o checksums.txt \
  "$base/argo-rollouts-checksums.txt"
grep -E "[[:space:]]\*?${asset}\$" checksums.txt > selected.sha256
sha256sum --check --strict selected.sha256
sudo install -m 0755 "$asset" /usr/local/bin/kubectl-argo-rollouts
kubectl argo rollouts version
