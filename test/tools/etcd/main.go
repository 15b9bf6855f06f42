// Command etcd is etcd's server, built from the Go module proxy for kovn's tests and sandbox. It is its own
// module because etcd's server and k8s.io/kubernetes pin different versions of shared dependencies.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
