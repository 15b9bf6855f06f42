// Package tools pins the Kubernetes control-plane binaries (kube-apiserver, kube-controller-manager,
// kube-scheduler, kubectl) and etcd that kovn's integration tests and sandbox run. It is a separate module so
// that k8s.io/kubernetes and its replace block stay out of kovn's own module. `make kube-tools` builds the
// binaries into .cache/kube/<version>/bin.
package tools
