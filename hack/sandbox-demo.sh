#!/usr/bin/env bash
# A short demo on a fresh sandbox: two pods on different nodes, one reaches the other over Geneve.
set -euo pipefail
export KUBECONFIG="$SANDBOX_DIR/kube/kubeconfig"
for n in 1 3; do
  cat <<YAML | "$KUBECTL" apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: demo-$n, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: node$n}
  containers: [{name: web, image: kovn.io/test, ports: [{containerPort: 80}]}]
YAML
done
"$KUBECTL" wait --for=condition=Ready pod/demo-1 pod/demo-3 --timeout=120s >/dev/null
"$KUBECTL" get pods -o wide
ip3=$("$KUBECTL" get pod demo-3 -o jsonpath='{.status.podIP}')
echo
echo "demo-1 (node1) -> demo-3 (node3, $ip3:80) over Geneve:"
"$KOVN" sandbox probe --state-dir "$SANDBOX_DIR" default/demo-1 tcp "$ip3:80"
cat <<TXT

The cluster is yours:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get nodes,pods -o wide
  $KOVN sandbox exec --state-dir $SANDBOX_DIR default/demo-1 -- ping -c 2 $ip3
  $KOVN sandbox status --state-dir $SANDBOX_DIR
  $KOVN sandbox down --state-dir $SANDBOX_DIR
TXT
