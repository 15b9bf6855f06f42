// Command kovn-cni is the CNI plugin binary the container runtime executes for every pod sandbox. It speaks
// CNI spec 1.x and forwards each request to the kovn node agent on its node.
package main

import (
	"fmt"
	"os"

	"github.com/kovn-io/kovn/go-controller/pkg/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		fmt.Println("kovn-cni", version.Get())
		return
	}
	fmt.Fprintln(os.Stderr, "kovn-cni", version.Get())
	fmt.Fprintln(os.Stderr, "kovn-cni is run by a container runtime with CNI_COMMAND set; this build only reports its version.")
	os.Exit(1)
}
