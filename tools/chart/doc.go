// Package chart tests the Helm chart in deploy/helm/sessionguard: helm lint
// and helm template for several sets of values, every rendered object
// decoded strictly into its Kubernetes type, and the containers' settings,
// ports and probes checked against what the validator and invalidator
// binaries of this repository accept.
package chart
